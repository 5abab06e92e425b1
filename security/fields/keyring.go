package fields

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"
)

// DefaultReloadInterval is how often a [Keyring] loaded from files checks
// them for changes, unless [WithReloadInterval] says otherwise.
const DefaultReloadInterval = 5 * time.Second

// Keyring holds named keysets. A field's option names its keyset; an empty
// name selects [DefaultKeyset]. A Keyring loaded from files swaps in a
// file's new keyset as soon as it is seen to change; a file that fails to
// load is reported and the last good keyset stays. It is safe for
// concurrent use.
type Keyring struct {
	sets atomic.Pointer[map[string]*Keyset]

	opts  keyringOptions
	mu    sync.Mutex // serialises reloads
	files map[string]*keyFile

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// keyFile is what a Keyring remembers of one file.
type keyFile struct {
	name, path string
	// stat of the last file read, good or bad, so that a bad file is
	// reported once rather than at every poll.
	size    int64
	modTime time.Time
	info    os.FileInfo
	sum     [sha256.Size]byte
}

// KeyringEvent reports a keyset file that was reloaded or refused.
type KeyringEvent struct {
	// Name and Path identify the keyset and its file.
	Name, Path string
	// Primary and Keys describe the keyset now in use.
	Primary uint32
	Keys    int
	// Err is set when the file was refused; the last good keyset stays.
	Err error
}

// KeyringOption configures [LoadKeyring].
type KeyringOption interface{ applyKeyring(*keyringOptions) }

type keyringOptionFunc func(*keyringOptions)

func (f keyringOptionFunc) applyKeyring(o *keyringOptions) { f(o) }

type keyringOptions struct {
	master   tink.AEAD
	interval time.Duration
	hook     func(KeyringEvent)
}

// WithMasterKey makes [LoadKeyring] read keyset files encrypted by master
// (a KMS key or another keyset's AEAD), and refuse cleartext ones. Without
// it, keyset files are cleartext, which is for development only.
func WithMasterKey(master tink.AEAD) KeyringOption {
	return keyringOptionFunc(func(o *keyringOptions) { o.master = master })
}

// WithReloadInterval sets how often the files are checked for changes;
// zero or less turns polling off ([Keyring.Reload] still works).
func WithReloadInterval(d time.Duration) KeyringOption {
	return keyringOptionFunc(func(o *keyringOptions) { o.interval = d })
}

// WithKeyringHook sets a function called after each reload, successful or
// refused. It runs on the polling goroutine (or in [Keyring.Reload]), must
// not block and must not call Reload.
func WithKeyringHook(hook func(KeyringEvent)) KeyringOption {
	return keyringOptionFunc(func(o *keyringOptions) { o.hook = hook })
}

// NewKeyring returns a Keyring holding the given keysets, by name. It does
// not watch any file; [Keyring.Set] replaces a keyset.
func NewKeyring(sets map[string]*Keyset) (*Keyring, error) {
	for name, ks := range sets {
		if err := checkName(name); err != nil {
			return nil, err
		}
		if ks == nil {
			return nil, &Error{Kind: KindBadKeyset, Keyset: name, Detail: "nil keyset"}
		}
	}
	r := &Keyring{}
	m := maps.Clone(sets)
	if m == nil {
		m = map[string]*Keyset{}
	}
	r.sets.Store(&m)
	return r, nil
}

// LoadKeyring reads each keyset file, named by the map's keys, and keeps
// watching them (see [WithReloadInterval]) until [Keyring.Close]. It fails
// if any file cannot be loaded now.
func LoadKeyring(files map[string]string, opts ...KeyringOption) (*Keyring, error) {
	o := keyringOptions{interval: DefaultReloadInterval}
	for _, opt := range opts {
		opt.applyKeyring(&o)
	}
	if len(files) == 0 {
		return nil, &Error{Kind: KindBadKeyset,
			Detail: "no keyset file given: create one with NewKeyset and WriteKeysetFile"}
	}
	r := &Keyring{opts: o, files: make(map[string]*keyFile, len(files))}
	sets := make(map[string]*Keyset, len(files))
	for name, path := range files {
		if err := checkName(name); err != nil {
			return nil, err
		}
		f := &keyFile{name: name, path: path}
		ks, err := f.load(o.master)
		if err != nil {
			return nil, err
		}
		r.files[name] = f
		sets[name] = ks
	}
	r.sets.Store(&sets)
	if o.interval > 0 {
		r.stop = make(chan struct{})
		r.done = make(chan struct{})
		go r.poll()
	}
	return r, nil
}

// KeysetFiles lists the keyset files of a directory: each "<name>.json"
// file is the keyset called name. The result suits [LoadKeyring].
func KeysetFiles(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, &Error{Kind: KindBadKeyset, Path: dir, Detail: "cannot list keyset files", Err: err}
	}
	files := map[string]string{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() || name == "" || strings.HasPrefix(name, ".") {
			continue
		}
		files[name] = filepath.Join(dir, e.Name())
	}
	return files, nil
}

func checkName(name string) error {
	if name == "" || strings.ContainsAny(name, "|/\\") {
		return &Error{Kind: KindBadKeyset, Keyset: name,
			Detail: "keyset names must be non-empty and hold no '|', '/' or '\\'"}
	}
	return nil
}

// Keyset returns the keyset called name ([DefaultKeyset] when name is
// empty), or nil when there is none.
func (r *Keyring) Keyset(name string) *Keyset {
	if name == "" {
		name = DefaultKeyset
	}
	return r.current()[name]
}

// current returns the keysets in use; a zero Keyring has none.
func (r *Keyring) current() map[string]*Keyset {
	if p := r.sets.Load(); p != nil {
		return *p
	}
	return nil
}

// Names returns the names of the keysets, sorted.
func (r *Keyring) Names() []string {
	return slices.Sorted(maps.Keys(r.current()))
}

// Set adds or replaces the keyset called name. Values sealed from then on
// use its primary key.
func (r *Keyring) Set(name string, ks *Keyset) error {
	if err := checkName(name); err != nil {
		return err
	}
	if ks == nil {
		return &Error{Kind: KindBadKeyset, Keyset: name, Detail: "nil keyset"}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := maps.Clone(r.current())
	if m == nil {
		m = map[string]*Keyset{}
	}
	m[name] = ks
	r.sets.Store(&m)
	return nil
}

// Reload checks every keyset file now and swaps in those that changed. It
// returns the errors of files that were refused; their last good keyset
// stays in use. The hook (see [WithKeyringHook]) hears of each change.
func (r *Keyring) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(r.files)) {
		f := r.files[name]
		if !f.changed() {
			continue
		}
		ks, err := f.load(r.opts.master)
		ev := KeyringEvent{Name: name, Path: f.path, Err: err}
		if errors.Is(err, errUnchanged) {
			continue
		}
		if err == nil {
			m := maps.Clone(r.current())
			m[name] = ks
			r.sets.Store(&m)
		} else {
			errs = append(errs, err)
		}
		if cur := (r.current())[name]; cur != nil {
			ev.Primary, ev.Keys = cur.primary, len(cur.ids)
		}
		if r.opts.hook != nil {
			r.opts.hook(ev)
		}
	}
	return errors.Join(errs...)
}

// Close stops watching the files. The keysets stay usable.
func (r *Keyring) Close() error {
	r.closeOnce.Do(func() {
		if r.stop != nil {
			close(r.stop)
			<-r.done
		}
	})
	return nil
}

func (r *Keyring) poll() {
	defer close(r.done)
	t := time.NewTicker(r.opts.interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			// Errors reach the hook; the last good keysets stay.
			_ = r.Reload()
		}
	}
}

// errUnchanged reports a file whose content is what was last loaded.
var errUnchanged = errors.New("fields: keyset file unchanged")

// changed reports whether the file's metadata differs from the last read.
func (f *keyFile) changed() bool {
	fi, err := os.Stat(f.path)
	if err != nil {
		// A missing file is reported once, then again when it reappears.
		return f.info != nil
	}
	return f.info == nil || !os.SameFile(fi, f.info) || fi.Size() != f.size ||
		!fi.ModTime().Equal(f.modTime)
}

// load reads and parses the file, remembering its metadata whatever the
// outcome.
func (f *keyFile) load(master tink.AEAD) (*Keyset, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		f.info = nil
		return nil, &Error{Kind: KindBadKeyset, Keyset: f.name, Path: f.path,
			Detail: "cannot read the file", Err: err}
	}
	data, err := os.ReadFile(f.path)
	f.info, f.size, f.modTime = fi, fi.Size(), fi.ModTime()
	if err != nil {
		return nil, &Error{Kind: KindBadKeyset, Keyset: f.name, Path: f.path,
			Detail: "cannot read the file", Err: err}
	}
	sum := sha256.Sum256(data)
	if bytes.Equal(sum[:], f.sum[:]) {
		return nil, errUnchanged
	}
	ks, err := ParseKeyset(data, master)
	if err != nil {
		var fe *Error
		if errors.As(err, &fe) {
			fe.Keyset, fe.Path = f.name, f.path
		}
		return nil, err
	}
	f.sum = sum
	return ks, nil
}
