#!/bin/sh
# gen-manpage.sh QALIGN VERSION — qalign(1) in man(7) format, made from the binary's own help texts
# (`qalign --help` and `qalign <command> --help` for every command it lists), so the page always
# covers every command and option of the binary it is installed with.
set -eu
Q=$1
VERSION=$2
esc() { sed -e 's/\\/\\e/g' -e 's/^\([.'"'"']\)/\\\&\1/'; }
cat <<HEAD
.TH QALIGN 1 "" "qalign $VERSION" "User Commands"
.SH NAME
qalign \\- question-alignment LoRA training, multilingual evaluation and analysis of Hugging Face LLMs
.SH SYNOPSIS
.B qalign
.I command
.RI [ options ]
.br
.B qalign
.I command
.B \\-\\-help
.SH DESCRIPTION
qalign LoRA-tunes Hugging Face causal language models (Llama-2, Mistral, Qwen1.5/Qwen2 layouts) on
question translation ("question alignment", Zhang et al., EMNLP 2024), evaluates them on the paper's
three tasks in twenty languages, and looks inside them (logit lens, PCA). It reads and writes the
Hugging Face and PEFT file layouts and runs on one CPU, a GPU, or many ranks under mpirun or srun.
.SH COMMANDS
.nf
HEAD
"$Q" --help | awk '/^commands:/{f=1;next} f' | esc
echo ".fi"
for c in $("$Q" --help | awk '/^commands:/{f=1;next} f && NF{print $1}'); do
  echo ".SS $c"
  echo ".nf"
  "$Q" "$c" --help 2>&1 | esc
  echo ".fi"
done
cat <<'TAIL'
.SH ENVIRONMENT
.TP
.B QALIGN_DATADIR
the data directory (default: \fIPREFIX\fR/share/qalign, found from the binary's own path).
.TP
.B QALIGN_TEMPLATES
directory searched first for a prompt template named in data.template (e.g. qwen -> qwen.yaml); then
the config file's directory/templates, ./configs/templates and $QALIGN_DATADIR/configs/templates.
.TP
.B QALIGN_DATA
the paper-data directory of qalign eval (default: assets/paper-data).
.TP
.B QALIGN_CUDA, QALIGN_DIST_MODE, QALIGN_DIST_DEADLINE_S, QALIGN_NCCL_ID_DIR
backend and distributed settings; see docs/cuda.md and docs/distributed.md.
.SH FILES
.TP
.I PREFIX/share/qalign/configs/
example training configs, prompt templates (templates/) and sweep grids (sweeps/).
.TP
.I PREFIX/share/qalign/slurm/
Slurm batch-script templates.
.TP
.I PREFIX/share/qalign/modulefiles/qalign/VERSION
an environment-modules (Tcl) modulefile for the prefix.
.TP
.I PREFIX/share/doc/qalign/
the documentation (install.md, training.md, evaluation.md, analysis.md, formats.md, ...).
.SH EXIT STATUS
0 on success, 1 on an error (one message naming the file or key), 2 on a usage error.
TAIL
