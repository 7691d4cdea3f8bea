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
