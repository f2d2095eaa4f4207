package build

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse_Errors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"NoSpace", "FROM demo\nRUN true\nENV A=1\nLABEL a=b\nEXPOSE 80\nCMD[\"ECHO\",\"IMAGE CREATOR\"]\n", `Dockerfile:6: unknown instruction: CMD["ECHO","IMAGE`},
		{"Hint", "FROM demo\nCMD[\"ECHO\",\"IMAGE CREATOR\"]\n", `hint: CMD needs a space before its arguments: write CMD ["ECHO","IMAGE CREATOR"]`},
		{"Unknown", "FROM demo\nFOO bar\n", "Dockerfile:2: unknown instruction: FOO"},
		{"Empty", "# nothing\n", "file with no instructions"},
		{"BeforeFrom", "RUN x\n", "Dockerfile"},
		{"BadFlag", "FROM demo\nCOPY --nope=1 a b\n", "Dockerfile:2: "},
		{"NoArgs", "FROM demo\nWORKDIR\n", "Dockerfile:2: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse("Dockerfile", []byte(tc.in))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a SyntaxError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

// FuzzParse feeds Dockerfiles (seeded from testdata/) to the parser: it
// returns stages or a SyntaxError, and never panics.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.Dockerfile")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		df, err := parse("Dockerfile", data)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("%T %v: not a SyntaxError", err, err)
			}
			return
		}
		if len(df.stages) == 0 {
			t.Fatal("parsed with no stage")
		}
	})
}
