package deps

import (
	_ "github.com/apache/arrow/go/v15/arrow/ipc"
	_ "github.com/ebitengine/purego"
	_ "github.com/nlpodyssey/safetensors"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/viper"
	_ "github.com/sugarme/tokenizer"
	_ "github.com/vbauerster/mpb/v8"
	_ "gonum.org/v1/gonum/diff/fd"
	_ "gonum.org/v1/plot"
	_ "gopkg.in/yaml.v3"
	_ "gorgonia.org/gorgonia"
	_ "gorgonia.org/tensor"
)
