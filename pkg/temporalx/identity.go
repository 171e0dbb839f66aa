package temporalx

import (
	"fmt"
	"os"
	"os/user"
)

// ClientIdentity is how the skein CLI names itself in the histories it writes to (who started,
// paused, modified or released a task): SKEIN_IDENTITY when set, else "skein:<OS user>@<host>",
// as the Temporal CLI writes "temporal-cli:<user>@<host>".
func ClientIdentity() string {
	if id := os.Getenv("SKEIN_IDENTITY"); id != "" {
		return id
	}
	return "skein:" + userName() + "@" + hostName()
}

// WorkerIdentity is how a worker names itself in the histories (the activities it ran):
// SKEIN_WORKER_IDENTITY when set, else "skein-worker:<pid>@<host>".
func WorkerIdentity() string {
	if id := os.Getenv("SKEIN_WORKER_IDENTITY"); id != "" {
		return id
	}
	return fmt.Sprintf("skein-worker:%d@%s", os.Getpid(), hostName())
}

func userName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}

func hostName() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "unknown"
}
