package snapshotter_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/snapshotter"
)

// loadDemo stores the fixture image as demo:latest, as strata load does.
func loadDemo(t *testing.T, st *layerstore.Store) layerstore.Image {
	t.Helper()
	imgs := storetest.Load(t, st, filepath.Join(fixtures.Dir(t), "oci"))
	if len(imgs) != 1 {
		t.Fatalf("the fixture layout holds %d images", len(imgs))
	}
	return imgs[0]
}

// serveInProcess serves a snapshotter of st on a socket; cleanup stops it,
// detaches what is left mounted (before storetest checks the store).
func serveInProcess(t *testing.T, st *layerstore.Store) snapshotsapi.SnapshotsClient {
	t.Helper()
	sn, err := snapshotter.Open(context.Background(), st, snapshotter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "strata-snap-")
	if err != nil {
		t.Fatal(err)
	}
	l, err := snapshotter.Listen(filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "s.sock")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, %v; want mode 0600 (containerd runs as root, no one else may call)", fi.Mode(), err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- snapshotter.Serve(ctx, sn, l) }()
	cc, err := grpc.NewClient("unix://"+filepath.Join(dir, "s.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		detachUnder(t, st.Root())
		os.RemoveAll(dir)
	})
	return snapshotsapi.NewSnapshotsClient(cc)
}

// Prepare with a target chain strata already stores (containerd's
// remote-snapshot handshake) answers AlreadyExists and makes the committed
// snapshot from the stored layers: nothing is applied, no layer is added.
func TestService_PrepareStoredTarget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts")
	}
	st := storetest.Open(t) // checked after serveInProcess's cleanup stops serving
	demo := loadDemo(t, st)
	c := serveInProcess(t, st)
	ctx := context.Background()
	before, err := st.DiskUsage()
	if err != nil {
		t.Fatal(err)
	}

	parent := ""
	for i := range demo.Layers {
		target := identity.ChainID(demo.Layers[:i+1])
		key := "extract-" + target.Encoded()[:12]
		_, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Key: key, Parent: parent, Labels: map[string]string{"containerd.io/snapshot.ref": target.String()}})
		if status.Code(err) != codes.AlreadyExists {
			t.Fatalf("layer %d: prepare with a stored target: %v, want AlreadyExists", i, err)
		}
		// What containerd's metadata store then looks for.
		lc, err := c.List(ctx, &snapshotsapi.ListSnapshotsRequest{Filters: []string{`labels."containerd.io/snapshot.ref"==` + target.String() + `,parent==` + `"` + parent + `"`}})
		if err != nil {
			t.Fatal(err)
		}
		r, err := lc.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Info) != 1 || r.Info[0].Name != key || r.Info[0].Kind != snapshotsapi.Kind_COMMITTED {
			t.Fatalf("layer %d: walk for the target found %v, want committed %s", i, r.Info, key)
		}
		parent = key
	}
	// A view of the top shows the image.
	v, err := c.View(ctx, &snapshotsapi.ViewSnapshotRequest{Key: "view", Parent: parent})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(v.Mounts[0].Source, "etc", "motd"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(fixtures.Dir(t), "rootfs", "etc", "motd"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("etc/motd in the view: %q, want %q", got, want)
	}
	after, err := st.DiskUsage()
	if err != nil {
		t.Fatal(err)
	}
	if after.Layers != before.Layers || after.Objects != before.Objects {
		t.Errorf("the handshake stored layers or objects: %d layers, %d objects before, %d, %d after", before.Layers, before.Objects, after.Layers, after.Objects)
	}
	// A target strata does not have is prepared as usual.
	other := digest.FromString("not stored")
	if _, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Key: "fresh", Parent: parent, Labels: map[string]string{"containerd.io/snapshot.ref": other.String()}}); err != nil {
		t.Fatalf("prepare with a target strata lacks: %v", err)
	}
	for _, k := range []string{"fresh", "view"} {
		if _, err := c.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
}
