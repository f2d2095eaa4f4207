package container

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-dev/strata/layerstore"
)

// Errors of the container records.
var (
	ErrNotFound  = errors.New("no such container")
	ErrNameInUse = errors.New("name already in use")
	ErrAmbiguous = errors.New("ambiguous container ID prefix")
)

// Status is a container's state, in docker's words.
type Status string

const (
	Created Status = "created"
	Running Status = "running"
	Exited  Status = "exited"
)

// Record is what strata keeps of a container: what it was made from, how it
// runs, and its last known state. It lives in <dir>/<id>/container.json.
type Record struct {
	ID       string        `json:"id"` // 64 hex digits, as docker's
	Name     string        `json:"name"`
	Image    digest.Digest `json:"image"`    // the image's ID
	ImageRef string        `json:"imageRef"` // what the user named
	Created  time.Time     `json:"created"`
	MountID  string        `json:"mountID"` // the kept mount session of its top layer
	// RuncRoot is the runtime's state directory (runc --root) the container
	// was made with; every runtime call on it uses this one, whatever the
	// caller's own. Empty (records made before it was kept): the caller's.
	RuncRoot string  `json:"runcRoot,omitempty"`
	Options  Options `json:"options"`
	// Config is the image's config, which Options are laid over at start.
	Config ocispec.ImageConfig `json:"config"`
	// Run settings that are not the runtime spec's.
	AutoRemove  bool              `json:"autoRemove,omitempty"`  // run --rm
	OpenStdin   bool              `json:"openStdin,omitempty"`   // -i
	StopSignal  string            `json:"stopSignal,omitempty"`  // default: the image's, else SIGTERM
	StopTimeout *int              `json:"stopTimeout,omitempty"` // seconds; default 10
	Labels      map[string]string `json:"labels,omitempty"`
	Volumes     []Volume          `json:"volumes,omitempty"`
	Ports       []Port            `json:"ports,omitempty"` // host ports as published at the last start
	State       State             `json:"state"`
	// Lost: the record on disk is torn (see lostRecord); only ID, MountID
	// and State are known.
	Lost bool `json:"-"`
}

// State is a container's run state.
type State struct {
	Status     Status    `json:"status"`
	Pid        int       `json:"pid,omitempty"`
	ExitCode   int       `json:"exitCode"`
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	// The supervisor process that holds the container while it runs: when
	// it is gone, so is the container (pid start time guards reuse).
	Supervisor      int    `json:"supervisor,omitempty"`
	SupervisorStart uint64 `json:"supervisorStart,omitempty"`
}

// ExitUnknown is the exit status of a container whose supervisor died
// without recording one.
const ExitUnknown = 255

// Current returns the state as it truly is: a container recorded as
// running whose supervisor is gone has exited, with ExitUnknown. Get and
// List return records already so (readNow), read again when the
// supervisor is gone: a caller that looked at the supervisor itself after
// reading could take an exit recorded in between for none.
func (s State) Current() State {
	if s.Status != Running {
		return s
	}
	if s.Supervisor > 0 {
		m := layerstore.MountRecord{PID: s.Supervisor, PIDStart: s.SupervisorStart}
		if m.Running() {
			return s
		}
	}
	s.Status, s.ExitCode, s.Pid = Exited, ExitUnknown, 0
	if s.Error == "" {
		s.Error = "the container's supervisor is gone"
	}
	return s
}

// Records keeps container records under a directory (<store>/containers).
// Create, Update and Remove serialise on a lock file there, so that two
// processes never give one name to two containers or lose an update.
type Records struct {
	dir string
}

// OpenRecords opens (making it when missing) the record directory dir.
func OpenRecords(dir string) (*Records, error) {
	if err := os.MkdirAll(filepath.Join(dir, namesDir), 0o700); err != nil {
		return nil, err
	}
	return &Records{dir: dir}, nil
}

const (
	namesDir   = ".names"
	recordFile = "container.json"
)

// RecordsDir is where the containers of the store at root keep their
// records.
func RecordsDir(root string) string { return filepath.Join(root, "containers") }

// ImageUsers lists the containers recorded under dir (RecordsDir) as the
// users of their images, for layerstore.Options.Users: a container holds
// its image from its record's making, in any state, whatever became of its
// top layer's lease. A torn record names no image.
func ImageUsers(dir string) ([]layerstore.ImageUser, error) {
	recs, err := (&Records{dir: dir}).List()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var us []layerstore.ImageUser
	for _, r := range recs {
		if r.Lost || r.Image == "" {
			continue
		}
		us = append(us, layerstore.ImageUser{Image: r.Image, Kind: "container", ID: r.ID, Running: r.State.Status == Running})
	}
	return us, nil
}

// Dir is the directory of container id: its record, bundle, log, /etc files.
func (r *Records) Dir(id string) string { return filepath.Join(r.dir, id) }

var validName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`) })

// NewID returns a fresh container ID.
func NewID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Create records rec (ID and Name set, or a name is made up). The name is
// taken or refused under the lock, as docker refuses a name in use.
func (r *Records) Create(rec *Record) error {
	if rec.ID == "" {
		rec.ID = NewID()
	}
	if rec.Name != "" && !validName().MatchString(strings.TrimPrefix(rec.Name, "/")) {
		return fmt.Errorf("invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", rec.Name)
	}
	rec.Name = strings.TrimPrefix(rec.Name, "/")
	return r.locked(func() error {
		if rec.Name == "" {
			for i := 0; ; i++ {
				n := randomName(i > 5)
				if _, err := os.Lstat(r.namePath(n)); errors.Is(err, os.ErrNotExist) {
					rec.Name = n
					break
				}
			}
		} else if id, err := os.ReadFile(r.namePath(rec.Name)); err == nil {
			if _, err := os.Stat(filepath.Join(r.Dir(string(id)), recordFile)); err == nil {
				return fmt.Errorf("the container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name: %w", "/"+rec.Name, string(id), ErrNameInUse)
			}
		}
		// The record first, then the name: a crash in between leaves a
		// container without its name file, which List still shows.
		if err := os.Mkdir(r.Dir(rec.ID), 0o700); err != nil {
			return err
		}
		if err := r.write(rec); err != nil {
			return errors.Join(err, os.RemoveAll(r.Dir(rec.ID)))
		}
		return writeFileAtomic(r.namePath(rec.Name), []byte(rec.ID), !rec.AutoRemove)
	})
}

func (r *Records) namePath(name string) string { return filepath.Join(r.dir, namesDir, name) }

// Get returns the container named by ref: its name, ID or a unique prefix of
// its ID.
func (r *Records) Get(ref string) (*Record, error) {
	ref = strings.TrimPrefix(ref, "/")
	if ref == "" {
		return nil, fmt.Errorf("no container named: %w", ErrNotFound)
	}
	if id, err := os.ReadFile(r.namePath(ref)); err == nil {
		if rec, err := r.readNow(string(id)); err == nil && (rec.Name == ref || rec.Lost) {
			rec.Name = ref // a lost record's name is known from here only
			return rec, nil
		}
	}
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, err
	}
	var match []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), ref) && e.Name() != namesDir {
			match = append(match, e.Name())
		}
	}
	switch {
	case slices.Contains(match, ref) || len(match) == 1:
		id := match[0]
		if slices.Contains(match, ref) {
			id = ref
		}
		rec, err := r.readNow(id)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
		}
		return rec, err
	case len(match) > 1:
		return nil, fmt.Errorf("%s: %w", ref, ErrAmbiguous)
	}
	return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
}

// List returns every container, newest first.
func (r *Records) List() ([]*Record, error) {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, err
	}
	var recs []*Record
	for _, e := range ents {
		if !e.IsDir() || e.Name() == namesDir {
			continue
		}
		rec, err := r.readNow(e.Name())
		if errors.Is(err, os.ErrNotExist) {
			continue // being created or removed
		}
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Created.After(recs[j].Created) })
	return recs, nil
}

// Update changes the record of id under the lock.
func (r *Records) Update(id string, fn func(*Record) error) (*Record, error) {
	var rec *Record
	err := r.locked(func() error {
		var err error
		if rec, err = r.read(id); err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
		return r.write(rec)
	})
	return rec, err
}

// Remove deletes the record of id and its directory (bundle, log, /etc
// files) and frees its name. The caller has removed its top layer.
func (r *Records) Remove(id string) error {
	return r.locked(func() error {
		rec, err := r.read(id)
		if err != nil {
			return err
		}
		// The record first: a crash after it leaves a directory List
		// skips and a stale name file Create reclaims.
		if err := os.Remove(filepath.Join(r.Dir(id), recordFile)); err != nil {
			return err
		}
		errs := []error{os.RemoveAll(r.Dir(id))}
		if b, err := os.ReadFile(r.namePath(rec.Name)); err == nil && string(b) == id {
			errs = append(errs, os.Remove(r.namePath(rec.Name)))
		}
		return errors.Join(errs...)
	})
}

// readNow is read, with the state as it is (Current): a record that says
// running whose supervisor is gone is read again before it is taken for a
// supervisor that died without recording the exit, since the supervisor may
// have recorded it and quit after the first read. It records before it
// quits, so the second read has what it recorded, if anything.
func (r *Records) readNow(id string) (*Record, error) {
	rec, err := r.read(id)
	if err != nil || rec.State.Status != Running {
		return rec, err
	}
	if afterRead != nil {
		afterRead(id)
	}
	if cur := rec.State.Current(); cur.Status == Running {
		return rec, nil
	}
	if rec, err = r.read(id); err != nil {
		return nil, err
	}
	rec.State = rec.State.Current()
	return rec, nil
}

// afterRead, when set (by tests), runs between readNow's first read of a
// running record and its look at the supervisor.
var afterRead func(id string)

func (r *Records) read(id string) (*Record, error) {
	if strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return nil, fmt.Errorf("%q: %w", id, ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join(r.Dir(id), recordFile))
	if err != nil {
		return nil, err
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		if !validID(id) {
			return nil, fmt.Errorf("container %s: %w: %w", id, layerstore.ErrCorrupt, err)
		}
		return lostRecord(id, err), nil
	}
	return &rec, nil
}

// lostRecord stands for a record that a crash of the machine left torn (a
// --rm container's record is not synced, see write): a container that has
// exited with ExitUnknown, which rm removes with its top layer (named by its
// ID, as Create names it).
func lostRecord(id string, err error) *Record {
	return &Record{
		ID:      id,
		MountID: id[:12],
		Lost:    true,
		State: State{
			Status:   Exited,
			ExitCode: ExitUnknown,
			Error:    fmt.Sprintf("its record was lost in a crash (%v)", err),
		},
	}
}

// write replaces rec's record. A --rm container's is not synced: it does
// not outlive the machine (its top layer is not kept either), a crash of
// this process leaves the record whole (it is renamed into place), and one
// of the machine at worst a torn record, which reads as a lost container
// that rm removes. Every other container's record is synced.
func (r *Records) write(rec *Record) error {
	if rec.Lost {
		return fmt.Errorf("container %s: its record was lost: %w", rec.ID[:12], layerstore.ErrCorrupt)
	}
	b, err := json.MarshalIndent(rec, "", "\t")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(r.Dir(rec.ID), recordFile), b, !rec.AutoRemove)
}

func (r *Records) locked(fn func() error) error {
	f, err := os.OpenFile(filepath.Join(r.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	return fn()
}

// writeFileAtomic replaces name with data: written, synced if sync,
// renamed.
func writeFileAtomic(name string, data []byte, sync bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil && sync {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
