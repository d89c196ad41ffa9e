package bench

import (
	"os"
	"strings"
	"testing"
)

func TestReadProcReadsCPUAndRSSOfAProcess(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.rssKB <= 0 || s.comm == "" || s.cpu < 0 {
		t.Fatalf("readProc(self) = %+v", s)
	}
}

func TestReadProcOfAMissingProcessFails(t *testing.T) {
	if _, err := readProc(1 << 30); err == nil {
		t.Fatal("readProc of a pid that does not exist succeeded")
	}
}

func TestTooManyClientsForTheFileDescriptorLimitFail(t *testing.T) {
	err := checkFDs(1 << 40)
	if err == nil || !strings.Contains(err.Error(), "ulimit -n") {
		t.Fatalf("checkFDs(2^40) = %v, want an error naming ulimit -n", err)
	}
}
