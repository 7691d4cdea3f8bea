package analysis

import (
	"encoding/csv"
	"fmt"
	"io"
	"strings"
)

// Table is a rendered result: markdown for reading, CSV for tools.
type Table struct {
	Title   string
	Notes   string
	Columns []string
	Rows    [][]string
}

// Markdown writes the table with its title and notes.
func (t Table) Markdown(w io.Writer) error {
	var b strings.Builder
	if t.Title != "" {
		fmt.Fprintf(&b, "### %s\n\n", t.Title)
	}
	if t.Notes != "" {
		fmt.Fprintf(&b, "%s\n\n", t.Notes)
	}
	b.WriteString("| " + strings.Join(t.Columns, " | ") + " |\n|")
	for range t.Columns {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// CSV writes the header and the rows.
func (t Table) CSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(t.Columns); err != nil {
		return err
	}
	if err := cw.WriteAll(t.Rows); err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}
