package dist

import (
	"os"
	"strconv"
)

// HostCores is how many cores this process should use when the launcher
// put ranks > 1 ranks on its host (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE):
// its equal share of the host's numCPU, at least 1. cores is 0 (use every
// core) for a single process, one rank per host, or when the user chose
// with GOMAXPROCS. Ranks that each use every core oversubscribe the host,
// and moetrain's workers, which poll for work between loops, then take
// cores the other ranks need.
func HostCores(numCPU int) (cores, ranks int) { return hostCores(os.Getenv, numCPU) }

func hostCores(getenv func(string) string, numCPU int) (cores, ranks int) {
	if getenv("MOETRAIN_MPI") == "0" || getenv("GOMAXPROCS") != "" {
		return 0, 0
	}
	local, err := strconv.Atoi(getenv("OMPI_COMM_WORLD_LOCAL_SIZE"))
	if err != nil || local <= 1 {
		return 0, 0
	}
	return max(1, numCPU/local), local
}
