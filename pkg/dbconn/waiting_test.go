package dbconn

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWaiting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	server, err := ln.Accept()
	require.NoError(t, err)
	defer server.Close()

	for _, tc := range []struct {
		name         string
		conn         net.Conn
		pastDeadline bool
	}{
		{"tcp", client, false},
		{"counted by a budget", &budgetConn{Conn: client, release: func() {}}, false},
		{"watched, then counted", &budgetConn{Conn: &trafficConn{Conn: client, t: &Traffic{}}, release: func() {}}, false},
		{"tls (its socket is asked)", tls.Client(client, &tls.Config{InsecureSkipVerify: true}), false},
		{"a past read deadline is set", client, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := tc.conn
			if tc.pastDeadline {
				require.NoError(t, client.SetReadDeadline(time.Unix(1, 0)))
				defer func() { require.NoError(t, client.SetReadDeadline(time.Time{})) }()
			}
			waiting, ok := Waiting(conn)
			require.True(t, ok)
			require.False(t, waiting, "nothing was sent")

			_, err := server.Write([]byte("x"))
			require.NoError(t, err)
			require.Eventually(t, func() bool { w, _ := Waiting(conn); return w }, 5*time.Second, time.Millisecond)
			waiting, _ = Waiting(conn)
			require.True(t, waiting, "asking does not take the byte")

			require.NoError(t, client.SetReadDeadline(time.Time{}))
			buf := make([]byte, 1)
			_, err = client.Read(buf)
			require.NoError(t, err)
			waiting, _ = Waiting(conn)
			require.False(t, waiting, "the byte was read")
		})
	}

	t.Run("a connection that does not say what it wraps", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		_, ok := Waiting(a)
		require.False(t, ok)
	})
	t.Run("the peer closed: the next read returns at once", func(t *testing.T) {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		s, err := ln.Accept()
		require.NoError(t, err)
		require.NoError(t, s.Close())
		require.Eventually(t, func() bool { w, ok := Waiting(c); return w && ok }, 5*time.Second, time.Millisecond)
	})
}
