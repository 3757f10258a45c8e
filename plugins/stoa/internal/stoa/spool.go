package stoa

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// spool holds one downloaded object until it has been read: in memory up to
// a limit, in a temporary file beyond it, so that many concurrent downloads
// of large objects do not add up in memory.
type spool struct {
	dir   string
	limit int64
	mem   []byte
	f     *os.File
	size  int64
	// toFile: the expected size is over the limit, go to a file at once.
	toFile bool
}

// spoolError marks a failure to store a download (not a network failure).
type spoolError struct{ err error }

func (e *spoolError) Error() string { return "storing the download: " + e.err.Error() }
func (e *spoolError) Unwrap() error { return e.err }

// newSpool returns a spool; hint is the expected size (-1 if unknown). A
// hint above the limit sends the bytes to a file from the start (no memory
// buffer to grow and copy out); a smaller one sizes the memory buffer.
func newSpool(dir string, limit, hint int64) *spool {
	s := &spool{dir: dir, limit: limit}
	switch {
	case hint > limit:
		s.toFile = true
	case hint > 0:
		s.mem = make([]byte, 0, hint)
	}
	return s
}

// Write implements io.Writer.
func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && (s.toFile || s.size+int64(len(p)) > s.limit) {
		f, err := os.CreateTemp(s.dir, "stoa-object-*.parquet")
		if err != nil {
			return 0, &spoolError{err}
		}
		s.f = f
		if _, err := f.Write(s.mem); err != nil {
			return 0, &spoolError{err}
		}
		s.mem = nil
	}
	if s.f != nil {
		n, err := s.f.Write(p)
		s.size += int64(n)
		if err != nil {
			return n, &spoolError{err}
		}
		return n, nil
	}
	s.mem = append(s.mem, p...)
	s.size += int64(len(p))
	return len(p), nil
}

// Size is the number of bytes stored.
func (s *spool) Size() int64 { return s.size }

// reader reads the stored bytes.
func (s *spool) reader() *io.SectionReader {
	if s.f != nil {
		return io.NewSectionReader(s.f, 0, s.size)
	}
	return io.NewSectionReader(bytes.NewReader(s.mem), 0, s.size)
}

// Close drops the bytes and removes the temporary file.
func (s *spool) Close() error {
	s.mem = nil
	if s.f == nil {
		return nil
	}
	name := s.f.Name()
	err := s.f.Close()
	if rerr := os.Remove(name); rerr != nil && err == nil {
		err = fmt.Errorf("removing spool file: %w", rerr)
	}
	s.f = nil
	return err
}
