package imagefmt

import (
	"strings"
	"testing"

	"github.com/strata-dev/strata/layerstore"
)

func TestNormalizeRef(t *testing.T) {
	const dgst = "sha256:2b96eb5eb241bc55c29b45ec37aba7217cc0cc4d7c67d7c7bfce3a10cdc024e0"
	cases := []struct {
		in, want string
	}{
		{"demo", "demo:latest"},
		{"demo:v1.2-rc_3", "demo:v1.2-rc_3"},
		{"docker.io/library/demo", "demo:latest"},
		{"docker.io/library/demo:latest", "demo:latest"},
		{"index.docker.io/library/demo:1", "demo:1"},
		{"library/demo", "demo:latest"},
		{"docker.io/team/app:v1", "team/app:v1"},
		{"docker.io/library/team/app", "library/team/app:latest"},
		{"localhost/app", "localhost/app:latest"},
		{"localhost:5000/app:v1", "localhost:5000/app:v1"},
		{"registry.example:5000/team/sub/app:v1", "registry.example:5000/team/sub/app:v1"},
		{"Registry.Example/app", "Registry.Example/app:latest"},
		{"[::1]:5000/app", "[::1]:5000/app:latest"},
		{"a__b/c--d.e_f", "a__b/c--d.e_f:latest"},
		{"localhost:5000", "localhost:5000"}, // a name "localhost" with tag "5000", as docker reads it
		{"demo@" + dgst, "demo@" + dgst},
		{"docker.io/library/demo@" + dgst, "demo@" + dgst},
		{"demo:v1@" + dgst, "demo:v1@" + dgst},
		{"registry.example/app@" + dgst, "registry.example/app@" + dgst},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeRef(tc.in)
			if err != nil {
				t.Fatalf("NormalizeRef(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("NormalizeRef(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if again, err := NormalizeRef(got); err != nil || again != got {
				t.Errorf("NormalizeRef(%q) = %q, %v; not idempotent", got, again, err)
			}
		})
	}
}

func TestNormalizeRef_Invalid(t *testing.T) {
	cases := []struct {
		in, why string
	}{
		{"", "no repository name"},
		{":v1", "no repository name"},
		{"Demo", "lowercase"},
		{"team/Demo:v1", "lowercase"},
		{"demo:", "tag"},
		{"demo:-x", "tag"},
		{"demo:" + strings.Repeat("x", 129), "tag"},
		{"demo@sha256:abc", "digest"},
		{"demo@", "digest"},
		{"-demo", "name component"},
		{"demo-", "name component"},
		{"a//b", "name component"},
		{"de mo", "name component"},
		{"bad_host.example:port/app", "registry host"},
		{"-bad.example/app", "registry host"},
		{strings.Repeat("a", 256), "longer than 255"},
		{"2b96eb5eb241bc55c29b45ec37aba7217cc0cc4d7c67d7c7bfce3a10cdc024e0", "image ID"},
		{"docker.io/library/2b96eb5eb241bc55c29b45ec37aba7217cc0cc4d7c67d7c7bfce3a10cdc024e0", "image ID"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeRef(tc.in)
			if err == nil {
				t.Fatalf("NormalizeRef(%q) = %q, want an error", tc.in, got)
			}
			wantErr(t, err, layerstore.ErrInvalid, tc.why)
			if !strings.Contains(err.Error(), `"`+tc.in+`"`) {
				t.Errorf("error %q does not quote the input", err)
			}
		})
	}
}

func TestSplitRef(t *testing.T) {
	cases := []struct {
		in, repo, tag string
	}{
		{"demo:latest", "demo", "latest"},
		{"demo", "demo", ""},
		{"localhost:5000/app:v1", "localhost:5000/app", "v1"},
		{"localhost:5000/app", "localhost:5000/app", ""},
		{"demo@sha256:ab", "demo", ""},
		{"demo:v1@sha256:ab", "demo", "v1"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			repo, tag := SplitRef(tc.in)
			if repo != tc.repo || tag != tc.tag {
				t.Errorf("SplitRef(%q) = %q, %q; want %q, %q", tc.in, repo, tag, tc.repo, tc.tag)
			}
		})
	}
}

// FuzzNormalizeRef checks NormalizeRef never panics, is idempotent, and that
// SplitRef takes apart what it builds.
func FuzzNormalizeRef(f *testing.F) {
	for _, s := range []string{"demo", "docker.io/library/demo:latest", "localhost:5000/a/b:c",
		"demo@sha256:2b96eb5eb241bc55c29b45ec37aba7217cc0cc4d7c67d7c7bfce3a10cdc024e0", "[::1]/x", "Demo/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeRef(s)
		if err != nil {
			return
		}
		again, err := NormalizeRef(n)
		if err != nil || again != n {
			t.Fatalf("NormalizeRef(%q) = %q, then %q, %v", s, n, again, err)
		}
		if !strings.Contains(n, "@") {
			repo, tag := SplitRef(n)
			if tag == "" || repo+":"+tag != n {
				t.Fatalf("SplitRef(%q) = %q, %q", n, repo, tag)
			}
		}
	})
}
