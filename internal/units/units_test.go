package units

import "testing"

func TestFormats(t *testing.T) {
	tests := []struct{ got, want string }{
		{Commas(0), "0"},
		{Commas(999), "999"},
		{Commas(1000), "1,000"},
		{Commas(16375728128), "16,375,728,128"},
		{Commas(-1234567), "-1,234,567"},
		{Bytes(512), "512 B"},
		{Bytes(1536), "1.5 KiB"},
		{Bytes(3 << 30), "3.0 GiB"},
		{Short(950), "950"},
		{Short(10846848), "10.85M"},
		{Short(2828650496), "2.83B"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"123", 123}, {"1000", 1000}, {"5GB", 5_000_000_000}, {"500MB", 500_000_000}, {"1.5kb", 1500},
		{"40GB", 40e9}, {"2GiB", 2 << 30}, {"64 KiB", 65536}, {"512 MiB", 512 << 20}, {"80GiB", 80 << 30},
		{"1.5TiB", 3 << 39}, {"2TB", 2e12}, {"7B", 7},
	}
	for _, tc := range tests {
		if got, err := ParseBytes(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "0", "GiB", "-5MB", "-1GiB", "lots", "eightyGiB", "0.5", "1e30TB", "NaN", "Inf"} {
		if got, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", bad, got)
		}
	}
}
