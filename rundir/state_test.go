package rundir

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/moetrain/moetrain/configs"
)

// A checkpoint written before a config key existed must load with that key
// at its default, so old runs still resume, evaluate and export.
func TestDecodeStateOldConfigMeansDefaults(t *testing.T) {
	cfg := configs.Default()
	cfg.Model.Heads = 2 // a stored value that differs from the default
	raw, err := EncodeState(NewState(cfg))
	if err != nil {
		t.Fatal(err)
	}
	// Drop model.router, as a state.json from before the key was added.
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc["config"].(map[string]any)["model"].(map[string]any), "router")
	old, _ := json.Marshal(doc)

	st, err := DecodeState(old, "ckpt")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Config.Model.Router, configs.Default().Model.Router; !reflect.DeepEqual(got, want) {
		t.Errorf("router of an old checkpoint = %+v, want the default %+v", got, want)
	}
	if st.Config.Model.Heads != 2 {
		t.Errorf("stored key lost: heads = %d, want 2", st.Config.Model.Heads)
	}
	if err := st.Config.Validate(); err != nil {
		t.Errorf("old checkpoint's config does not validate: %v", err)
	}
}
