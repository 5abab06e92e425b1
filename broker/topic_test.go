package broker

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckTopic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		topic     string
		wildcards bool
		ok        bool
	}{
		{"one token", "orders", false, true},
		{"tokens", "orders.created.v1", false, true},
		{"dash and underscore", "user-events.signed_up", false, true},
		{"empty", "", false, false},
		{"empty token", "orders..created", false, false},
		{"leading dot", ".orders", false, false},
		{"trailing dot", "orders.", false, false},
		{"space", "orders created", false, false},
		{"non-ASCII", "commandes.créées", false, false},
		{"star when publishing", "orders.*", false, false},
		{"star when subscribing", "orders.*", true, true},
		{"tail when subscribing", "orders.>", true, true},
		{"tail not last", "orders.>.x", true, false},
		{"star inside a token", "orders.cre*", true, false},
		{"too long", strings.Repeat("a", maxTopicLen+1), false, false},
		{"longest", strings.Repeat("a", maxTopicLen), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkTopic(tt.topic, tt.wildcards)
			if (err == nil) != tt.ok {
				t.Fatalf("checkTopic(%q, %v) = %v, want ok=%v", tt.topic, tt.wildcards, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidTopic) {
				t.Errorf("error %v is not ErrInvalidTopic", err)
			}
		})
	}
}

func TestMatchTopic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, pattern, subject string
		want                   bool
	}{
		{"exact", "a.b", "a.b", true},
		{"different", "a.b", "a.c", false},
		{"shorter subject", "a.b", "a", false},
		{"longer subject", "a", "a.b", false},
		{"star", "a.*", "a.b", true},
		{"star needs a token", "a.*", "a", false},
		{"star is one token", "a.*", "a.b.c", false},
		{"star first", "*.b", "a.b", true},
		{"tail", "a.>", "a.b.c", true},
		{"tail needs a token", "a.>", "a", false},
		{"tail alone", ">", "a.b", true},
		{"prefix is not a token", "ab", "abc", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchTopic(tt.pattern, tt.subject); got != tt.want {
				t.Errorf("matchTopic(%q, %q) = %v, want %v", tt.pattern, tt.subject, got, tt.want)
			}
		})
	}
}

func TestStreamFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, topic, stream string
		ok                  bool
	}{
		{"nested", "orders.created", "moat_orders", true},
		{"single", "orders", "moat_orders", true},
		{"wildcard after", "orders.*", "moat_orders", true},
		{"wildcard first", "*.created", "", false},
		{"tail first", ">", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, subjects, err := streamFor(tt.topic)
			if (err == nil) != tt.ok {
				t.Fatalf("streamFor(%q) error %v", tt.topic, err)
			}
			if name != tt.stream {
				t.Errorf("stream %q, want %q", name, tt.stream)
			}
			if tt.ok {
				first := strings.TrimPrefix(tt.stream, streamPrefix)
				if len(subjects) != 2 || subjects[0] != first || subjects[1] != first+".>" {
					t.Errorf("subjects %v", subjects)
				}
			}
		})
	}
}
