package layerstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/strata-dev/strata/internal/storetest"
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
			got, err := layerstore.NormalizeRef(tc.in)
			if err != nil {
				t.Fatalf("layerstore.NormalizeRef(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("layerstore.NormalizeRef(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if again, err := layerstore.NormalizeRef(got); err != nil || again != got {
				t.Errorf("layerstore.NormalizeRef(%q) = %q, %v; not idempotent", got, again, err)
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
			got, err := layerstore.NormalizeRef(tc.in)
			if err == nil {
				t.Fatalf("layerstore.NormalizeRef(%q) = %q, want an error", tc.in, got)
			}
			wantRefErr(t, err, layerstore.ErrInvalid, tc.why)
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
			repo, tag := layerstore.SplitRef(tc.in)
			if repo != tc.repo || tag != tc.tag {
				t.Errorf("layerstore.SplitRef(%q) = %q, %q; want %q, %q", tc.in, repo, tag, tc.repo, tc.tag)
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
		n, err := layerstore.NormalizeRef(s)
		if err != nil {
			return
		}
		again, err := layerstore.NormalizeRef(n)
		if err != nil || again != n {
			t.Fatalf("layerstore.NormalizeRef(%q) = %q, then %q, %v", s, n, again, err)
		}
		if !strings.Contains(n, "@") {
			repo, tag := layerstore.SplitRef(n)
			if tag == "" || repo+":"+tag != n {
				t.Fatalf("layerstore.SplitRef(%q) = %q, %q", n, repo, tag)
			}
		}
	})
}

// refCases are references to tag an image with: good ones and what they
// are stored as, bad ones and what their error must say.
var refCases = []struct {
	ref, want, why string // want "" means refused, with why in the error
}{
	{ref: "demo", want: "demo:latest"},
	{ref: "docker.io/library/demo:1", want: "demo:1"},
	{ref: "localhost:5000/team/app:v1", want: "localhost:5000/team/app:v1"},
	{ref: "registry.example.com/a/b", want: "registry.example.com/a/b:latest"},
	{ref: "demo:V1.2_x", want: "demo:V1.2_x"},
	{ref: "demo@sha256:2b96eb5eb241bc55c29b45ec37aba7217cc0cc4d7c67d7c7bfce3a10cdc024e0", why: "digest reference"},
	{ref: "demo:v1@sha256:2b96eb5eb241bc55c29b45ec37aba7217cc0cc4d7c67d7c7bfce3a10cdc024e0", why: "digest reference"},
	{ref: "Demo", why: "lowercase"},
	{ref: "demo:-x", why: "tag"},
	{ref: "a//b", why: "name component"},
	{ref: "", why: "no repository name"},
}

// TestStore_Refs_EveryWayToName: AddImage, NewImage and Tag take names
// through ParseTag: good ones are stored normalized, bad ones (a digest
// reference above all) fail with ErrInvalid and store nothing.
func TestStore_Refs_EveryWayToName(t *testing.T) {
	ctx := context.Background()
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	paths := map[string]func(s *layerstore.Store, ref string) error{
		"AddImage": func(s *layerstore.Store, ref string) error {
			_, err := s.AddImage(ctx, &layerstore.ImageSource{Names: []string{ref}, ConfigRaw: config}, nil)
			return err
		},
		"NewImage": func(s *layerstore.Store, ref string) error {
			_, err := s.NewImage(ctx, layerstore.NewImageOptions{Names: []string{ref}})
			return err
		},
		"Tag": func(s *layerstore.Store, ref string) error {
			if _, err := s.AddImage(ctx, &layerstore.ImageSource{ConfigRaw: config}, nil); err != nil {
				return err
			}
			return s.Tag(string(digest.FromBytes(config)), ref)
		},
	}
	for path, name := range paths {
		for _, tc := range refCases {
			t.Run(path+"/"+tc.ref, func(t *testing.T) {
				s := storetest.Open(t)
				err := name(s, tc.ref)
				imgs, lerr := s.Images()
				if lerr != nil {
					t.Fatal(lerr)
				}
				var tags []string
				for _, img := range imgs {
					tags = append(tags, img.RepoTags...)
				}
				if tc.want == "" {
					wantRefErr(t, err, layerstore.ErrInvalid, tc.why)
					if len(tags) != 0 {
						t.Errorf("%q was refused but the store has tags %q", tc.ref, tags)
					}
					return
				}
				if err != nil {
					t.Fatalf("%s %q: %v", path, tc.ref, err)
				}
				if len(tags) != 1 || tags[0] != tc.want {
					t.Errorf("%s %q stored tags %q, want [%s]", path, tc.ref, tags, tc.want)
				}
				if img, err := s.ResolveImage(tc.ref); err != nil || len(img.RepoTags) != 1 {
					t.Errorf("ResolveImage(%q) = %v, %v", tc.ref, img.RepoTags, err)
				}
			})
		}
	}
}

func wantRefErr(t testing.TB, err, sentinel error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one wrapping %q", sentinel)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %q does not wrap %q", err, sentinel)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not mention %q", err, f)
		}
	}
}
