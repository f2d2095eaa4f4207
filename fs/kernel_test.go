package fs

import "testing"

func TestKernelVersion(t *testing.T) {
	for _, tt := range []struct {
		release      string
		major, minor int
	}{{"6.18.44-fc-v669", 6, 18}, {"6.9.0", 6, 9}, {"5.10.0-28-amd64", 5, 10}, {"6.1rc2", 6, 1}, {"junk", 0, 0}} {
		if ma, mi := kernelVersion(tt.release); ma != tt.major || mi != tt.minor {
			t.Errorf("kernelVersion(%q) = %d.%d, want %d.%d", tt.release, ma, mi, tt.major, tt.minor)
		}
	}
}
