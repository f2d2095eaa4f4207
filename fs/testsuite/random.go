package testsuite

// A seeded random sequence of operations, applied to a plain copy of the
// fixture rootfs and to a mount, as the scripts in ops_suite_test.go are.
// The seed is logged; STRATA_SEED=n replays a run and STRATA_RANDOM_OPS=n
// changes its length.

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

func (ts *suite) testRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("STRATA_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("STRATA_SEED=%q: %v", s, err)
		}
		seed = v
	}
	nops := 400
	if s := os.Getenv("STRATA_RANDOM_OPS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("STRATA_RANDOM_OPS=%q: %v", s, err)
		}
		nops = v
	}
	t.Logf("seed %d (replay with STRATA_SEED=%d)", seed, seed)

	img := ts.demo
	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "passthrough"}[pt], func(t *testing.T) {
			ts.randomRun(t, img, seed, nops, pt)
		})
	}
}

// suiteRandomRun applies nops random operations chosen from seed to a copy of
// the rootfs and to a mount, comparing as the scripts do, and stops at the
// first divergence.
func (ts *suite) randomRun(t *testing.T, img *suiteImage, seed uint64, nops int, passthrough bool) {
	const compareEvery = 20
	ref := ts.copyRootfs(t)
	m := ts.mountImage(t, img, suiteMountOptions{Passthrough: passthrough})
	start := time.Now().Add(-2 * time.Second)
	g := &suiteRandom{rng: rand.New(rand.NewPCG(seed, 0x5742a7a)), ref: ref}
	var history []string
	failed := 0 // ops that failed (alike) on both sides
	fail := func(i int) {
		t.Fatalf("seed %d: mount and reference diverged at op %d; the ops so far:\n\t%s", seed, i+1, joinTail(history, 60))
	}
	for i := 0; i < nops; i++ {
		st := g.next(t, ref)
		history = append(history, fmt.Sprintf("%d: %s", i+1, st.name))
		refObs, refErr := st.do(ref)
		gotObs, gotErr := st.do(m.Dir)
		if refErr != nil {
			failed++
		}
		if errnoOf(refErr) != errnoOf(gotErr) || (refErr == nil) != (gotErr == nil) {
			t.Errorf("op %d %s: reference: %v, mount: %v", i+1, st.name, errString(refErr), errString(gotErr))
			fail(i)
		}
		if refObs != gotObs {
			t.Errorf("op %d %s: reference observed %q, mount observed %q", i+1, st.name, refObs, gotObs)
			fail(i)
		}
		if (i+1)%compareEvery == 0 || i == nops-1 {
			if d := suiteCompareTrees(t, ref, m.Dir, start); len(d) > 0 {
				suiteDiffs(t, fmt.Sprintf("after op %d: reference copy vs mount", i+1), d)
				fail(i)
			}
		}
	}
	t.Logf("%d ops, %d of them failed alike on both sides; %d entries at the end", nops, failed, len(g.scan(t, ref)))
}

func joinTail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n\t")
}

// suiteRandom picks operations from the current state of the reference.
type suiteRandom struct {
	rng *rand.Rand
	seq int // counter for new names
	ref string
}

type suitePath struct {
	rel string
	typ layerstore.Type
}

// scan lists every path of the reference tree with its type, root excluded.
func (g *suiteRandom) scan(t *testing.T, root string) []suitePath {
	t.Helper()
	var ps []suitePath
	err := filepath.WalkDir(root, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if full == root {
			return nil
		}
		rel, _ := filepath.Rel(root, full)
		ps = append(ps, suitePath{filepath.ToSlash(rel), suiteTypeOf(full)})
		return nil
	})
	if err != nil {
		t.Fatalf("scan reference: %v", err)
	}
	return ps
}

func (g *suiteRandom) pick(ps []suitePath, ok func(suitePath) bool) (string, bool) {
	var c []string
	for _, p := range ps {
		if ok(p) {
			c = append(c, p.rel)
		}
	}
	if len(c) == 0 {
		return "", false
	}
	return c[g.rng.IntN(len(c))], true
}

func isType(ts ...layerstore.Type) func(suitePath) bool {
	return func(p suitePath) bool {
		for _, t := range ts {
			if p.typ == t {
				return true
			}
		}
		return false
	}
}

func anyPath(suitePath) bool { return true }

// newName is a fresh name in a random directory (the root included).
func (g *suiteRandom) newName(ps []suitePath) string {
	g.seq++
	name := fmt.Sprintf("r%d", g.seq)
	if g.rng.IntN(4) == 0 {
		return name
	}
	if d, ok := g.pick(ps, isType(layerstore.TypeDir)); ok {
		return d + "/" + name
	}
	return name
}

// target is an existing path or a new name, half and half.
func (g *suiteRandom) target(ps []suitePath) string {
	if g.rng.IntN(2) == 0 {
		if p, ok := g.pick(ps, anyPath); ok {
			return p
		}
	}
	return g.newName(ps)
}

var suiteRandomModes = []uint32{0o644, 0o600, 0o755, 0o700, 0o4755, 0o2750, 0o1777, 0o000, 0o444}

func (g *suiteRandom) next(t *testing.T, ref string) suiteStep {
	t.Helper()
	ps := g.scan(t, ref)
	reg := isType(layerstore.TypeReg)
	notLink := func(p suitePath) bool { return p.typ != layerstore.TypeSymlink }
	nonDir := func(p suitePath) bool { return p.typ != layerstore.TypeDir }
	data := func() string {
		b := make([]byte, 1+g.rng.IntN(100))
		for i := range b {
			b[i] = byte('a' + g.rng.IntN(26))
		}
		return string(b)
	}
	for {
		switch g.rng.IntN(25) {
		case 0, 1:
			return opWrite(g.newName(ps), data())
		case 2:
			if p, ok := g.pick(ps, reg); ok {
				return opWrite(p, data())
			}
		case 3, 4:
			if p, ok := g.pick(ps, reg); ok {
				var st unix.Stat_t
				_ = unix.Lstat(filepath.Join(ref, p), &st)
				return opPwrite(p, g.rng.Int64N(st.Size+200), data())
			}
		case 5:
			if p, ok := g.pick(ps, reg); ok {
				return opAppend(p, data())
			}
		case 6:
			if p, ok := g.pick(ps, reg); ok {
				return opTruncate(p, g.rng.Int64N(20000))
			}
		case 7:
			if p, ok := g.pick(ps, notLink); ok {
				return opChmod(p, suiteRandomModes[g.rng.IntN(len(suiteRandomModes))])
			}
		case 8:
			if p, ok := g.pick(ps, anyPath); ok {
				return opChown(p, g.rng.IntN(3)*1000, g.rng.IntN(3)*1000)
			}
		case 9:
			if p, ok := g.pick(ps, anyPath); ok {
				return opUtimes(p, 1_000_000_000+g.rng.Int64N(1_000_000))
			}
		case 10:
			if p, ok := g.pick(ps, anyPath); ok {
				ns := []string{"user.a", "user.b", "trusted.c"}[g.rng.IntN(3)]
				return opSetxattr(p, ns, data(), 0)
			}
		case 11:
			if p, ok := g.pick(ps, anyPath); ok {
				ns := []string{"user.a", "user.origin", "trusted.c"}[g.rng.IntN(3)]
				return opRemovexattr(p, ns)
			}
		case 12:
			return opMkdir(g.newName(ps), []uint32{0o755, 0o700, 0o1777}[g.rng.IntN(3)])
		case 13:
			if p, ok := g.pick(ps, isType(layerstore.TypeDir)); ok {
				return opRmdir(p)
			}
		case 14:
			if p, ok := g.pick(ps, nonDir); ok {
				return opUnlink(p)
			}
		case 15, 16:
			if p, ok := g.pick(ps, anyPath); ok {
				return opRename(p, g.target(ps))
			}
		case 17:
			if p, ok := g.pick(ps, anyPath); ok {
				if q, ok := g.pick(ps, anyPath); ok {
					return opRenameat2(p, q, []uint{unix.RENAME_EXCHANGE, unix.RENAME_NOREPLACE}[g.rng.IntN(2)])
				}
			}
		case 18:
			return opSymlink([]string{"../etc/passwd", "/bin/busybox", "nowhere", "."}[g.rng.IntN(4)], g.newName(ps))
		case 19:
			if p, ok := g.pick(ps, nonDir); ok {
				return opLink(p, g.target(ps))
			}
		case 20:
			if g.rng.IntN(2) == 0 {
				return opMkfifo(g.newName(ps), 0o644)
			}
			if p, ok := g.pick(ps, isType(layerstore.TypeDir)); ok && g.rng.IntN(4) == 0 {
				return opRmAll(p)
			}
		case 21:
			if p, ok := g.pick(ps, reg); ok {
				return opRead(p)
			}
			if p, ok := g.pick(ps, isType(layerstore.TypeDir)); ok {
				return opReaddir(p)
			}
		case 22:
			if p, ok := g.pick(ps, reg); ok {
				var st unix.Stat_t
				if unix.Lstat(filepath.Join(ref, p), &st) == nil && st.Size > 8 {
					return opMmapWrite(p, int(g.rng.Int64N(st.Size-8)), data()[:1])
				}
			}
		case 23:
			if p, ok := g.pick(ps, reg); ok {
				mode := []uint32{0, unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE}[g.rng.IntN(3)]
				return opFallocate(p, mode, g.rng.Int64N(10000), 1+g.rng.Int64N(10000))
			}
		case 24:
			if p, ok := g.pick(ps, reg); ok {
				return opReadThenWrite(p)
			}
			if p, ok := g.pick(ps, isType(layerstore.TypeDir)); ok {
				return opReaddir(p)
			}
		}
	}
}
