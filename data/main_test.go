package data

import (
	"os"
	"testing"
)

var tempRoot string

func osMkdirTemp() (string, error) { return os.MkdirTemp(tempRoot, "fixture") }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "moetrain-data-test")
	if err != nil {
		panic(err)
	}
	tempRoot = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
