package fields

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	optionsv1 "github.com/moatrpc/moat/proto/moat/options/v1"
)

// adPrefix starts the associated data of every sealed value. The full
// associated data is adPrefix|keyset|message full name|field number.
const adPrefix = "moat.fields.v1"

// plan says, for one message type, which fields to seal and which to
// redact, and which message-typed fields lead to more. Plans are computed
// once per descriptor and shared by every Sealer.
type plan struct {
	md     protoreflect.MessageDescriptor
	seal   []step
	redact []step
	// err is set when a field is marked SECRET but cannot hold ciphertext.
	err error
}

// step is one field of a plan.
type step struct {
	fd protoreflect.FieldDescriptor
	// descend: the field holds messages whose type leads to marked fields.
	descend bool
	// keyset and ad are set for seal steps.
	keyset string
	ad     []byte
}

var plans sync.Map // protoreflect.MessageDescriptor → *plan

// planFor returns the cached plan of md, computing it on first use.
func planFor(md protoreflect.MessageDescriptor) *plan {
	if p, ok := plans.Load(md); ok {
		return p.(*plan)
	}
	p, _ := plans.LoadOrStore(md, buildPlan(md))
	return p.(*plan)
}

// planCache remembers the last plan one call site used, so that a run of
// messages of one type skips the shared map; a call site that alternates
// types pays the map lookup and a pointer store. It is safe for concurrent
// use and never allocates.
type planCache struct{ last atomic.Pointer[plan] }

func (c *planCache) get(md protoreflect.MessageDescriptor) *plan {
	if p := c.last.Load(); p != nil && p.md == md {
		return p
	}
	p := planFor(md)
	c.last.Store(p)
	return p
}

// marks is what a field's options say about it.
type marks struct {
	secret    bool
	sensitive bool // PII, SECRET or debug_redact
	keyset    string
}

func fieldMarks(fd protoreflect.FieldDescriptor) marks {
	opts, ok := fd.Options().(*descriptorpb.FieldOptions)
	if !ok || opts == nil {
		return marks{}
	}
	var m marks
	pol, ok := proto.GetExtension(opts, optionsv1.E_Field).(*optionsv1.FieldPolicy)
	if ok && pol != nil {
		switch pol.GetSensitivity() {
		case optionsv1.Sensitivity_SENSITIVITY_SECRET:
			m.secret, m.sensitive = true, true
		case optionsv1.Sensitivity_SENSITIVITY_PII:
			m.sensitive = true
		}
		m.keyset = pol.GetKey()
	}
	if opts.GetDebugRedact() {
		m.sensitive = true
	}
	if m.keyset == "" {
		m.keyset = DefaultKeyset
	}
	return m
}

// reach records whether a message type leads, at any depth, to fields
// marked SECRET or sensitive.
type reach struct{ secret, sensitive bool }

var reaches sync.Map // protoreflect.MessageDescriptor → reach

// reachOf explores every message type reachable from md once. Its answer
// for md is exact even when types are recursive.
func reachOf(md protoreflect.MessageDescriptor) reach {
	if r, ok := reaches.Load(md); ok {
		return r.(reach)
	}
	var r reach
	seen := map[protoreflect.FullName]bool{md.FullName(): true}
	queue := []protoreflect.MessageDescriptor{md}
	for len(queue) > 0 && !(r.secret && r.sensitive) {
		cur := queue[0]
		queue = queue[1:]
		fds := cur.Fields()
		for i := range fds.Len() {
			fd := fds.Get(i)
			m := fieldMarks(fd)
			r.secret = r.secret || m.secret
			r.sensitive = r.sensitive || m.sensitive
			if sub := messageOf(fd); sub != nil && !seen[sub.FullName()] {
				seen[sub.FullName()] = true
				queue = append(queue, sub)
			}
		}
	}
	reaches.Store(md, r)
	return r
}

// messageOf returns the message type a field holds: its own, its list
// elements' or its map values'. It is nil for scalar fields.
func messageOf(fd protoreflect.FieldDescriptor) protoreflect.MessageDescriptor {
	if fd.IsMap() {
		fd = fd.MapValue()
	}
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		return fd.Message()
	}
	return nil
}

// valueKind returns the kind of a field's values: its own, its list
// elements' or its map values'.
func valueKind(fd protoreflect.FieldDescriptor) protoreflect.Kind {
	if fd.IsMap() {
		return fd.MapValue().Kind()
	}
	return fd.Kind()
}

// buildPlan looks at md's own fields only.
//
// TODO(fields): extension fields are not walked, so a SECRET or PII mark
// on an extension has no effect; walking them needs the extension types
// present in each message, which the descriptor alone does not give.
func buildPlan(md protoreflect.MessageDescriptor) *plan {
	p := &plan{md: md}
	fds := md.Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		m := fieldMarks(fd)
		sub := messageOf(fd)
		if m.secret {
			switch k := valueKind(fd); {
			case k == protoreflect.StringKind || k == protoreflect.BytesKind:
				p.seal = append(p.seal, step{fd: fd, keyset: m.keyset, ad: associatedData(fd, m.keyset)})
			case p.err == nil:
				p.err = fieldError(KindUnsupported, fd, m.keyset, fmt.Sprintf(
					"marked SECRET but of kind %s: only string and bytes values can be sealed", k))
			}
		} else if sub != nil && reachOf(sub).secret {
			p.seal = append(p.seal, step{fd: fd, descend: true})
		}
		if m.sensitive {
			p.redact = append(p.redact, step{fd: fd})
		} else if sub != nil && reachOf(sub).sensitive {
			p.redact = append(p.redact, step{fd: fd, descend: true})
		}
	}
	return p
}

func associatedData(fd protoreflect.FieldDescriptor, keyset string) []byte {
	s := adPrefix + "|" + keyset + "|" + string(fd.ContainingMessage().FullName()) + "|" +
		strconv.Itoa(int(fd.Number()))
	return []byte(s)
}

// Validate reports the first field of md, or of a message type reachable
// from it, that is marked SECRET but cannot hold ciphertext. Servers can
// call it when they register a service to fail at start rather than at the
// first call.
func Validate(md protoreflect.MessageDescriptor) error {
	seen := map[protoreflect.FullName]bool{}
	var walk func(protoreflect.MessageDescriptor) error
	walk = func(md protoreflect.MessageDescriptor) error {
		if seen[md.FullName()] {
			return nil
		}
		seen[md.FullName()] = true
		if err := planFor(md).err; err != nil {
			return err
		}
		fds := md.Fields()
		for i := range fds.Len() {
			if sub := messageOf(fds.Get(i)); sub != nil {
				if err := walk(sub); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(md)
}

// Sensitive reports whether messages of type md hold, at any depth, a
// field marked SECRET (secret) or marked PII, SECRET or debug_redact
// (sensitive).
func Sensitive(md protoreflect.MessageDescriptor) (secret, sensitive bool) {
	r := reachOf(md)
	return r.secret, r.sensitive
}
