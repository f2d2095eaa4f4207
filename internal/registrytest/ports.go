package registrytest

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	portMu sync.Mutex
	next   int // guarded by portMu
)

// Listen takes a free 127.0.0.1 port in $STRATA_TEST_PORTS ("5100-5149",
// the default) and returns its listener, for a server of the test's own.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	lo, hi := portRange()
	// Start where another test process (go test runs packages at once)
	// is unlikely to: at an offset of this process's own.
	n := hi - lo + 1
	first := (os.Getpid()*7 + next) % n
	next++
	for i := 0; i < n; i++ {
		p := lo + (first+i)%n
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			return l
		}
	}
	t.Fatalf("no free port in %d-%d ($STRATA_TEST_PORTS)", lo, hi)
	return nil
}

// FreeAddr is a 127.0.0.1 address whose port was free a moment ago, for a
// server that binds it itself (docker-registry); Start tries another if
// it is taken meanwhile.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l := Listen(t)
	addr := l.Addr().String()
	l.Close()
	return addr
}

func portRange() (int, int) {
	lo, hi := 5100, 5149
	if r := os.Getenv("STRATA_TEST_PORTS"); r != "" {
		a, b, ok := strings.Cut(r, "-")
		x, e1 := strconv.Atoi(a)
		y, e2 := strconv.Atoi(b)
		if ok && e1 == nil && e2 == nil && x <= y {
			lo, hi = x, y
		}
	}
	return lo, hi
}
