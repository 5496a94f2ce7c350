package exec

import "os"

// File is a secret or config a task gets as a file. The agent holds its data
// in memory only; an executor writes it to a tmpfs for the task's life and
// never to disk.
type File struct {
	// Kind is "secret" or "config", Name the object's name (for errors).
	Kind, Name string
	// Path is where the file is in the task's filesystem.
	Path string
	Data []byte
	UID  uint32
	GID  uint32
	Mode os.FileMode
}
