package broker_test

import (
	"context"
	"fmt"
	"time"

	"github.com/moatrpc/moat/broker"
	"github.com/moatrpc/moat/security"
)

// Example starts an embedded NATS server, connects two services to it over
// mutual TLS, and delivers one signed event.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca, _ := security.NewCA("example.test")
	natsID, _ := ca.Identity("nats")
	shopID, _ := ca.Identity("shop")
	billingID, _ := ca.Identity("billing")

	srv, err := broker.StartEmbedded(ctx, natsID)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	connect := func(id *security.Identity) broker.Broker {
		b, err := broker.NewNATS(broker.WithIdentity(id), broker.WithURL(srv.ClientURL()))
		if err != nil {
			panic(err)
		}
		if err := b.Connect(ctx); err != nil {
			panic(err)
		}
		return b
	}
	shop, billing := connect(shopID), connect(billingID)
	defer shop.Disconnect(ctx)
	defer billing.Disconnect(ctx)

	got := make(chan string, 1)
	handle := func(ctx context.Context, m *broker.Message) error {
		publisher, _ := broker.PublisherFromContext(ctx)
		got <- fmt.Sprintf("%s from %s", m.Body, publisher)
		return nil
	}
	_, err = billing.Subscribe("orders.created", handle,
		broker.WithQueue("billing"), broker.WithPublishers("shop"))
	if err != nil {
		fmt.Println(err)
		return
	}
	err = shop.Publish(ctx, "orders.created", &broker.Message{Body: []byte("order 42")})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-got)
	// Output: order 42 from spiffe://example.test/svc/shop
}
