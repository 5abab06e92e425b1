package security

import (
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ServiceID returns the SPIFFE ID of a service in a trust domain:
// spiffe://<trustDomain>/svc/<service>.
func ServiceID(trustDomain, service string) (spiffeid.ID, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("security: trust domain %q: %w", trustDomain, err)
	}
	if err := ValidateServiceName(service); err != nil {
		return spiffeid.ID{}, err
	}
	return spiffeid.FromSegments(td, "svc", service)
}

// ValidateServiceName reports whether name can be a moat service name: 1 to
// 63 characters, dot-separated labels of lowercase letters, digits and '-',
// each label starting with a letter and ending with a letter or digit (as
// DNS labels do). The same name is the registry key and the last segment of
// the service's SPIFFE ID.
func ValidateServiceName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("security: service name %q must be 1 to 63 characters", name)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return fmt.Errorf("security: service name %q has an empty label", name)
		}
		if label[0] < 'a' || label[0] > 'z' {
			return fmt.Errorf("security: service name %q: each label must start with a lowercase letter", name)
		}
		if label[len(label)-1] == '-' {
			return fmt.Errorf("security: service name %q: a label cannot end with '-'", name)
		}
		for _, r := range label {
			ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-'
			if !ok {
				return fmt.Errorf("security: service name %q may hold only a-z, 0-9, '-' and '.'", name)
			}
		}
	}
	return nil
}

// ServiceOf returns the service name in a moat SPIFFE ID, whose path must be
// exactly /svc/<service>.
func ServiceOf(id spiffeid.ID) (string, error) {
	name, ok := strings.CutPrefix(id.Path(), "/svc/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("security: SPIFFE ID %q is not of the form spiffe://<trust-domain>/svc/<service>", id)
	}
	if err := ValidateServiceName(name); err != nil {
		return "", err
	}
	return name, nil
}

// idFromCert extracts the single SPIFFE ID of a workload certificate.
func idFromCert(cert *x509.Certificate, subject string) (spiffeid.ID, *Error) {
	var found []spiffeid.ID
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id, err := spiffeid.FromURI(u)
		if err != nil {
			return spiffeid.ID{}, &Error{
				Reason: ReasonBadSPIFFEID, Subject: subject, Err: err,
				Detail: fmt.Sprintf("URI SAN %q is not a valid SPIFFE ID; "+
					"reissue it with 'moat certs issue <service>'", u.String()),
			}
		}
		found = append(found, id)
	}
	switch {
	case len(found) == 0:
		return spiffeid.ID{}, refuse(ReasonNoSPIFFEID, subject,
			"certificate has no spiffe:// URI SAN naming its service; "+
				"issue workload certificates with 'moat certs issue <service>'")
	case len(found) > 1:
		return spiffeid.ID{}, refuse(ReasonBadSPIFFEID, subject,
			"certificate carries %d SPIFFE IDs, a workload certificate must carry exactly one",
			len(found))
	}
	if _, err := ServiceOf(found[0]); err != nil {
		return spiffeid.ID{}, refuse(ReasonBadSPIFFEID, subject,
			"SPIFFE ID %q does not name a service: want spiffe://<trust-domain>/svc/<service>", found[0])
	}
	return found[0], nil
}
