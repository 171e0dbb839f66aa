package source

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// spool keeps the messages of one streamed (in-progress) source transaction on local disk until
// its commit arrives, so a transaction of any size costs the worker disk, not memory. This is
// what PostgreSQL's own apply worker does with streamed transactions. Each message is stored as a
// 4-byte length and its bytes; a subtransaction's abort truncates the file where that
// subtransaction's first message starts.
type spool struct {
	file *os.File
	w    *bufio.Writer
	size int64
	// subStart is the offset of each subtransaction's first message.
	subStart map[uint32]int64
	messages int64
	// relations are the relation descriptions spooled ('R' messages) and where each starts:
	// pgoutput describes a relation once per session, also inside a subtransaction, and not
	// again after that subtransaction aborts, so an abort keeps them (abortSub).
	relations []spooledRelation
}

// spooledRelation is one spooled relation description.
type spooledRelation struct {
	at  int64
	msg []byte
}

func newSpool(dir string, xid uint32) (*spool, error) {
	f, err := os.CreateTemp(dir, fmt.Sprintf("skein-xid-%d-*.spool", xid))
	if err != nil {
		return nil, fmt.Errorf("spool streamed transaction %d: %w (set SKEIN_SPOOL_DIR to a directory with room)", xid, err)
	}
	// The file is only ever reached through f: removing the name now means a crash leaves nothing.
	_ = os.Remove(f.Name())
	return &spool{file: f, w: bufio.NewWriterSize(f, 1<<20), subStart: map[uint32]int64{}}, nil
}

// add appends one message of subtransaction xid (the top-level xid for its own changes).
func (s *spool) add(xid uint32, msg []byte) error {
	if _, ok := s.subStart[xid]; !ok {
		s.subStart[xid] = s.size
	}
	return s.write(msg)
}

// write appends one message.
func (s *spool) write(msg []byte) error {
	if len(msg) > 0 && msg[0] == 'R' {
		s.relations = append(s.relations, spooledRelation{at: s.size, msg: append([]byte(nil), msg...)})
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(msg)))
	if _, err := s.w.Write(n[:]); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := s.w.Write(msg); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.size += int64(4 + len(msg))
	s.messages++
	return nil
}

// abortSub drops the messages of subtransaction xid and of everything after its first message
// (its own subtransactions), as the source rolled them back.
func (s *spool) abortSub(xid uint32) error {
	at, ok := s.subStart[xid]
	if !ok {
		return nil
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := s.file.Truncate(at); err != nil {
		return fmt.Errorf("spool: truncate: %w", err)
	}
	if _, err := s.file.Seek(at, io.SeekStart); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.size = at
	for sub, start := range s.subStart {
		if start >= at {
			delete(s.subStart, sub)
		}
	}
	// The descriptions sent in what was rolled back stay: the source will not send them again.
	var kept []spooledRelation
	for i, r := range s.relations {
		if r.at >= at {
			kept, s.relations = s.relations[i:], s.relations[:i:i]
			break
		}
	}
	for _, r := range kept {
		if err := s.write(r.msg); err != nil {
			return err
		}
	}
	return nil
}

// replay calls fn with every message in order. The slice passed to fn is reused.
func (s *spool) replay(fn func(msg []byte) error) error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	r := bufio.NewReaderSize(io.LimitReader(s.file, s.size), 1<<20)
	var buf []byte
	var n [4]byte
	for {
		if _, err := io.ReadFull(r, n[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("spool: read: %w", err)
		}
		l := int(binary.BigEndian.Uint32(n[:]))
		if cap(buf) < l {
			buf = make([]byte, l)
		}
		buf = buf[:l]
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("spool: read: %w", err)
		}
		if err := fn(buf); err != nil {
			return err
		}
	}
}

func (s *spool) close() { _ = s.file.Close() }
