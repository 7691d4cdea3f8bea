package dist

import "testing"

func TestHostCores(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		numCPU int
		want   int
	}{
		{"single process", nil, 8, 0},
		{"one rank per host", map[string]string{"OMPI_COMM_WORLD_LOCAL_SIZE": "1"}, 8, 0},
		{"two ranks on 8 cores", map[string]string{"OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, 8, 4},
		{"two ranks on 2 cores", map[string]string{"OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, 2, 1},
		{"three ranks on 8 cores", map[string]string{"OMPI_COMM_WORLD_LOCAL_SIZE": "3"}, 8, 2},
		{"more ranks than cores", map[string]string{"OMPI_COMM_WORLD_LOCAL_SIZE": "4"}, 2, 1},
		{"GOMAXPROCS chosen", map[string]string{"OMPI_COMM_WORLD_LOCAL_SIZE": "2", "GOMAXPROCS": "2"}, 2, 0},
		{"MPI off", map[string]string{"OMPI_COMM_WORLD_LOCAL_SIZE": "2", "MOETRAIN_MPI": "0"}, 2, 0},
		{"garbage", map[string]string{"OMPI_COMM_WORLD_LOCAL_SIZE": "x"}, 2, 0},
	}
	for _, tc := range tests {
		got, ranks := hostCores(func(k string) string { return tc.env[k] }, tc.numCPU)
		if got != tc.want || (got > 0) != (ranks > 1) {
			t.Errorf("%s: hostCores = %d cores for %d ranks, want %d cores", tc.name, got, ranks, tc.want)
		}
	}
}
