package broker

import (
	"github.com/nats-io/nats-server/v2/server"

	"github.com/moatrpc/moat/security"
)

// queueAuth gives each client of the embedded server the permissions of
// the service its certificate names. The TLS handshake has already
// verified the certificate; queueAuth only reads its SPIFFE ID.
//
// A client may subscribe to any subject, but may join only the queue group
// named after its own service, so that a workload cannot take a share of
// another service's events by joining its queue group.
type queueAuth struct{}

// Check implements server.Authentication.
func (queueAuth) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.CLIENT {
		return false
	}
	cs := c.GetTLSConnectionState()
	if cs == nil {
		return false
	}
	id, err := security.PeerFromState(*cs)
	if err != nil {
		return false
	}
	svc, err := security.ServiceOf(id)
	if err != nil {
		return false
	}
	c.RegisterUser(&server.User{
		Username: id.String(),
		Permissions: &server.Permissions{
			Subscribe: &server.SubjectPermission{
				// A plain entry allows plain subscriptions; the queue
				// entries limit which queue groups may be joined.
				Allow: []string{">", "> " + svc},
			},
		},
	})
	return true
}
