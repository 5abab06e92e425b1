package broker

import (
	"fmt"
	"strings"
)

// maxTopicLen bounds topics; NATS itself allows longer subjects, but a
// topic is a name, not a payload.
const maxTopicLen = 255

// streamPrefix starts the name of every stream the broker creates.
const streamPrefix = "moat_"

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChar(s[i]) {
			return false
		}
	}
	return true
}

func tokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_'
}

// checkTopic reports whether topic is a list of dot-separated tokens of
// letters, digits, '-' and '_'; with wildcards, a token may also be '*'
// (any one token) and the last token '>' (one or more tokens).
func checkTopic(topic string, wildcards bool) error {
	if topic == "" || len(topic) > maxTopicLen {
		return fmt.Errorf("%w %q: want 1 to %d characters", ErrInvalidTopic, topic, maxTopicLen)
	}
	tokens := strings.Split(topic, ".")
	for i, tok := range tokens {
		switch {
		case tok == "":
			return fmt.Errorf("%w %q: empty token", ErrInvalidTopic, topic)
		case tok == "*" || tok == ">":
			if !wildcards {
				return fmt.Errorf("%w %q: wildcards are for subscriptions only",
					ErrInvalidTopic, topic)
			}
			if tok == ">" && i != len(tokens)-1 {
				return fmt.Errorf("%w %q: '>' must be the last token", ErrInvalidTopic, topic)
			}
		default:
			for j := 0; j < len(tok); j++ {
				if !tokenChar(tok[j]) {
					return fmt.Errorf("%w %q: tokens hold letters, digits, '-' and '_' only",
						ErrInvalidTopic, topic)
				}
			}
		}
	}
	return nil
}

// matchTopic reports whether a subject matches a subscription pattern,
// with NATS's wildcard rules. Both are valid topics.
func matchTopic(pattern, subject string) bool {
	for {
		p, prest, pmore := strings.Cut(pattern, ".")
		s, srest, smore := strings.Cut(subject, ".")
		switch {
		case p == ">":
			return true
		case p != "*" && p != s:
			return false
		case !pmore || !smore:
			return pmore == smore
		}
		pattern, subject = prest, srest
	}
}

// streamFor returns the stream that stores a topic's events: one stream
// per first token, named moat_<first token>, holding the subjects
// <first token> and <first token>.>.
func streamFor(topic string) (name string, subjects []string, err error) {
	first, _, _ := strings.Cut(topic, ".")
	if first == "*" || first == ">" {
		return "", nil, fmt.Errorf("%w %q: the first token of a durable or persistent topic "+
			"names its stream and cannot be a wildcard", ErrInvalidTopic, topic)
	}
	return streamPrefix + first, []string{first, first + ".>"}, nil
}
