package bench

import (
	"os"
	"strings"
	"testing"
)

func TestMountData_Page(t *testing.T) {
	if err := mountData("lowerdir=/a:/b,upperdir=/u,workdir=/w"); err != nil {
		t.Errorf("a short option string: %v", err)
	}
	long := "lowerdir=" + strings.Repeat("/var/tmp/layer:", os.Getpagesize()/15+1)
	if err := mountData(long); err == nil {
		t.Errorf("a %d-byte option string passed; mount(2) would cut it", len(long))
	}
}
