#!/usr/bin/env bash
# Download one of the pretrained pix2pix generators published with the reference PyTorch implementation
# into checkpoints/NAME_pretrained/latest_net_G.pth (checkpoints/ of this repository, whatever the
# current directory), and print the test.py command that uses it.
#
# Usage: bash scripts/download_pix2pix_model.sh NAME
#   NAME: edges2shoes | sat2map | map2sat | facades_label2photo | day2night
#
# The file is a bare state dict of the reference generator (no options saved with it), so test.py
# takes the architecture from its flags; the reference's defaults (--netG unet_256 --norm batch) fit.
#
# Environment:
#   PIX2PIX_MODEL_URL  base URL to fetch NAME.pth from (default: the Berkeley mirror);
#                      a file:// URL works too, e.g. for offline tests.
#   CHECKPOINTS_DIR    folder that gets NAME_pretrained/ (default: checkpoints/ at the repository root).
#
# Exit status: 0 on success (or when the target file already exists), 1 when the download fails,
# the downloaded file is empty or not a PyTorch file, or no download tool is found, 2 for an
# unknown NAME or a wrong number of arguments.
set -euo pipefail

VALID_NAMES=(edges2shoes sat2map map2sat facades_label2photo day2night)
DEFAULT_BASE_URL="http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"

usage() {
    echo "usage: $(basename "$0") NAME" >&2
    echo "  NAME is one of: ${VALID_NAMES[*]}" >&2
}

die() {
    echo "error: $*" >&2
    exit 1
}

if [[ $# -ne 1 ]]; then
    usage
    exit 2
fi
NAME="$1"

# The data set and direction that go with each model in the reference's test commands.
case "$NAME" in
    facades_label2photo) DATAROOT=./datasets/facades DIRECTION=BtoA ;;
    sat2map) DATAROOT=./datasets/maps DIRECTION=AtoB ;;
    map2sat) DATAROOT=./datasets/maps DIRECTION=BtoA ;;
    edges2shoes) DATAROOT=./datasets/edges2shoes DIRECTION=AtoB ;;
    day2night) DATAROOT=./datasets/night2day DIRECTION=BtoA ;;
    *)
        echo "error: unknown model '$NAME'" >&2
        usage
        exit 2
        ;;
esac

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
DEFAULT_CHECKPOINTS="$REPO_ROOT/checkpoints"
CHECKPOINTS="${CHECKPOINTS_DIR:-$DEFAULT_CHECKPOINTS}"
RUN_NAME="${NAME}_pretrained"
RUN_DIR="$CHECKPOINTS/$RUN_NAME"
TARGET="$RUN_DIR/latest_net_G.pth"
if [[ -e "$TARGET" ]]; then
    echo "$TARGET already exists; nothing to do (remove it to download again)."
    exit 0
fi

BASE_URL="${PIX2PIX_MODEL_URL:-$DEFAULT_BASE_URL}"
URL="${BASE_URL%/}/$NAME.pth"

# The folders this run creates (deepest first), removed again if it fails, so a failed run leaves
# nothing behind; rmdir only ever removes empty folders.
CREATED=()
dir="$RUN_DIR"
while [[ ! -e "$dir" ]]; do
    CREATED+=("$dir")
    dir="$(dirname "$dir")"
done
mkdir -p "$RUN_DIR" || die "cannot create $RUN_DIR"

# Download into a scratch file next to the target, so the final move is a rename on the same file
# system and latest_net_G.pth is never half-written.
TMP=""
DONE=0
cleanup() {
    if [[ -n "$TMP" ]]; then
        rm -f "$TMP"
    fi
    if [[ $DONE -ne 1 ]]; then
        for d in ${CREATED[@]+"${CREATED[@]}"}; do
            rmdir "$d" 2>/dev/null || true
        done
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
TMP="$(mktemp "$RUN_DIR/.latest_net_G.pth.download.XXXXXX")" || die "cannot create a scratch file in $RUN_DIR"

echo "Downloading $URL"
if command -v curl >/dev/null 2>&1; then
    curl -fL --progress-bar -o "$TMP" "$URL" || die "download failed: $URL"
elif [[ "$URL" == file://* ]]; then
    # wget cannot read file:// URLs; copy the local file instead.
    cp "${URL#file://}" "$TMP" || die "download failed: $URL"
elif command -v wget >/dev/null 2>&1; then
    wget -q --show-progress -O "$TMP" "$URL" || die "download failed: $URL"
else
    die "neither curl nor wget is installed; cannot download $URL"
fi

# A PyTorch file starts with the zip magic PK\x03\x04 (torch.save's format since 1.6) or with the
# pickle protocol byte 0x80 (the legacy format); anything else (an HTML error page, say) is refused.
if [[ ! -s "$TMP" ]]; then
    die "the file downloaded from $URL is empty"
fi
magic="$(head -c 4 "$TMP" | od -An -tx1)"
magic="${magic//[[:space:]]/}"
if [[ "$magic" != 504b0304 && "$magic" != 80* ]]; then
    if [[ "$magic" == 3c* ]]; then # '<': <!DOCTYPE html>, <html>, <?xml ...
        die "the file downloaded from $URL is not a PyTorch file: it looks like an HTML or XML page (an error page of the server?)"
    fi
    die "the file downloaded from $URL is not a PyTorch file (it starts with bytes $magic)"
fi

# mktemp makes the file readable by its owner only; give it the mode a new file would get.
chmod "$(printf '%o' $((0666 & ~$(umask))))" "$TMP"
mv -f "$TMP" "$TARGET"
TMP=""
DONE=1

echo "Done: $TARGET"
echo "It is a bare state dict of the reference generator: test.py takes the architecture from its flags,"
echo "and the reference's defaults (--netG unet_256 --norm batch) are the ones this model was trained with."
CKPT_FLAG=""
if [[ "$CHECKPOINTS" != "$DEFAULT_CHECKPOINTS" ]]; then
    CKPT_FLAG=" --checkpoints_dir $(printf '%q' "$CHECKPOINTS")"
fi
echo "Next, from $REPO_ROOT (with the $(basename "$DATAROOT") data set in $DATAROOT):"
echo "    python test.py --dataroot $DATAROOT --name $RUN_NAME --direction $DIRECTION$CKPT_FLAG"
