// Package services holds the example moat services (auth, profile) and the
// scenario that exercises them. Their users are synthetic: no real person's
// data is in this tree.
package services

import (
	_ "embed"
	"encoding/json"
	"fmt"

	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
)

// User is one synthetic user of the example services.
type User struct {
	UserID   string  `json:"user_id"`
	Username string  `json:"username"`
	Password string  `json:"password"`
	Name     string  `json:"name"`
	Address  Address `json:"address"`
	Phone    string  `json:"phone"`
	Email    string  `json:"email"`
}

// Address is a synthetic user's postal address.
type Address struct {
	Street     string `json:"street"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

//go:embed testdata/users.json
var usersJSON []byte

// Users returns the synthetic users shipped in testdata/users.json.
func Users() ([]User, error) {
	var users []User
	if err := json.Unmarshal(usersJSON, &users); err != nil {
		return nil, fmt.Errorf("services: parse users: %w", err)
	}
	return users, nil
}

// Secrets returns every value of the scenario that must never be seen on
// the wire or in logs in clear: passwords, names, addresses, phones and
// emails.
func Secrets(users []User) []string {
	var out []string
	for _, u := range users {
		out = append(out, u.Password, u.Name, u.Address.Street, u.Phone, u.Email)
	}
	return out
}

// Profile returns u's profile as the profile service serves it.
func (u User) Profile() *profilev1.Profile {
	return &profilev1.Profile{
		UserId: u.UserID,
		Name:   u.Name,
		Address: &profilev1.Address{
			Street: u.Address.Street, City: u.Address.City,
			PostalCode: u.Address.PostalCode, Country: u.Address.Country,
		},
		Phone: u.Phone,
		Email: u.Email,
	}
}
