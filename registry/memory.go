package registry

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// Memory is a registry held in process memory, for programs whose services
// all run in one process, and for examples. It is safe for concurrent use.
// Nodes stay until deregistered; there are no heartbeats.
type Memory struct {
	mu       sync.Mutex
	services map[string]map[string]*Service // name -> node id -> service with one node
	changed  chan struct{}                  // closed and replaced on every change
}

// NewMemory returns an empty in-memory registry.
func NewMemory() *Memory {
	return &Memory{services: map[string]map[string]*Service{}, changed: make(chan struct{})}
}

// String returns "memory".
func (m *Memory) String() string { return "memory" }

// Register adds the nodes of s.
func (m *Memory) Register(_ context.Context, s *Service, _ ...RegisterOption) error {
	if err := validate(s); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	nodes := m.services[s.Name]
	if nodes == nil {
		nodes = map[string]*Service{}
		m.services[s.Name] = nodes
	}
	for _, n := range s.Nodes {
		one := s.Clone()
		one.Nodes = []*Node{{ID: n.ID, Address: n.Address, Metadata: n.Metadata}}
		nodes[n.ID] = one.Clone()
	}
	m.notifyLocked()
	return nil
}

// Deregister removes the nodes of s.
func (m *Memory) Deregister(_ context.Context, s *Service) error {
	if s == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range s.Nodes {
		delete(m.services[s.Name], n.ID)
	}
	if len(m.services[s.Name]) == 0 {
		delete(m.services, s.Name)
	}
	m.notifyLocked()
	return nil
}

func (m *Memory) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// GetService returns the nodes of name grouped by version.
func (m *Memory) GetService(_ context.Context, name string) ([]*Service, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.snapshotLocked(name)
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, nil
}

func (m *Memory) snapshotLocked(name string) []*Service {
	byVersion := map[string]*Service{}
	ids := make([]string, 0, len(m.services[name]))
	for id := range m.services[name] {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []*Service
	for _, id := range ids {
		one := m.services[name][id]
		s, ok := byVersion[one.Version]
		if !ok {
			s = one.Clone()
			s.Nodes = nil
			byVersion[one.Version] = s
			out = append(out, s)
		}
		s.Nodes = append(s.Nodes, one.Clone().Nodes...)
	}
	return out
}

// ListServices returns the names of registered services.
func (m *Memory) ListServices(context.Context) ([]*Service, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Service
	for name := range m.services {
		out = append(out, &Service{Name: name})
	}
	slices.SortFunc(out, func(a, b *Service) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Watch follows the nodes of name.
func (m *Memory) Watch(ctx context.Context, name string) (Watcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	return &memoryWatcher{m: m, name: name, ctx: ctx, cancel: cancel}, nil
}

type memoryWatcher struct {
	m      *Memory
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	last   []*Service
	sent   bool
}

func (w *memoryWatcher) Next() ([]*Service, error) {
	for {
		w.m.mu.Lock()
		snap := w.m.snapshotLocked(w.name)
		changed := w.m.changed
		w.m.mu.Unlock()
		if !w.sent || !sameNodes(snap, w.last) {
			w.sent, w.last = true, snap
			return snap, nil
		}
		select {
		case <-changed:
		case <-w.ctx.Done():
			return nil, ErrWatcherStopped
		}
	}
}

func (w *memoryWatcher) Stop() { w.cancel() }
