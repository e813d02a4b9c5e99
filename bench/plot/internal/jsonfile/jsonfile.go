// Package jsonfile reads the records that bench/plot's packages keep as
// JSON files (a timeline's Record, a surge's File, latency Data): decoded,
// validated, and an error naming what was read and the file.
package jsonfile

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// Validator is a pointer to a record that checks itself.
type Validator[T any] interface {
	*T
	Validate() error
}

// Read decodes a T from rd and validates it; an error, of either, starts
// with what (such as "read timeline").
func Read[T any, P Validator[T]](rd io.Reader, what string) (*T, error) {
	var v T
	if err := json.NewDecoder(rd).Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := P(&v).Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return &v, nil
}

// ReadFile reads the file at path with read; an error of read names the
// path, one of opening it is as os.Open gives it.
func ReadFile[T any](path string, read func(io.Reader) (*T, error)) (*T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	v, err := read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}
