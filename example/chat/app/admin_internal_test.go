package app

import (
	"maps"
	"testing"
)

func TestAdminAddressesFollowTheFirstInStartOrder(t *testing.T) {
	ids := []string{"chat-1", "connector-1", "gate-1"}
	got, err := adminAddrs(Options{AdminAddr: "127.0.0.1:3002"}, ids)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"chat-1": "127.0.0.1:3002", "connector-1": "127.0.0.1:3003", "gate-1": "127.0.0.1:3004"}
	if !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	got, _ = adminAddrs(Options{AdminAddr: "127.0.0.1:3002", EphemeralPorts: true}, ids)
	for id, a := range got {
		if a != "127.0.0.1:0" {
			t.Errorf("%s at %s with EphemeralPorts", id, a)
		}
	}
	if got, _ := adminAddrs(Options{}, ids); len(got) != 0 {
		t.Errorf("admin addresses %v without Options.AdminAddr", got)
	}
	if _, err := adminAddrs(Options{AdminAddr: "127.0.0.1:65535"}, ids); err == nil {
		t.Error("ports past 65535 accepted")
	}
}
