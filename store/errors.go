package store

import "errors"

var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: the object changed since it was read (optimistic
	// concurrency); Update retries fn when the FSM answers with it.
	ErrConflict = errors.New("store: conflict")
	// ErrExists: an object with that ID already exists.
	ErrExists = errors.New("store: already exists")
	// ErrMalformed: a log entry, change set or snapshot could not be decoded.
	ErrMalformed = errors.New("store: malformed")
	// ErrReadOnly: a write on the read view handed out by View.
	ErrReadOnly = errors.New("store: read-only transaction")
	// ErrTooLarge: an object encodes to more than MaxObjectBytes.
	ErrTooLarge = errors.New("store: object too large")
)

// MaxObjectBytes bounds one object as encoded into a raft entry: every
// object lives in each manager's memory, the log and every snapshot. The
// API's per-field limits refuse earlier with a clearer message; this is the
// guard for whatever they miss.
const MaxObjectBytes = 1 << 20
