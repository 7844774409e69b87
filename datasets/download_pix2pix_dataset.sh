#!/usr/bin/env bash
# Download one of the public pix2pix paired datasets and unpack it into datasets/NAME/
# (next to this script, whatever the current directory).
#
# Usage: bash datasets/download_pix2pix_dataset.sh NAME
#   NAME: facades | maps | edges2shoes | edges2handbags | night2day
#
# Environment:
#   PIX2PIX_DATASET_URL  base URL to fetch NAME.tar.gz from (default: the Berkeley mirror);
#                        a file:// URL works too, e.g. for offline tests.
#
# Exit status: 0 on success (or when datasets/NAME already exists), 1 when the download or
# unpacking fails or no download tool is found, 2 for an unknown or refused NAME.
set -euo pipefail

VALID_NAMES=(facades maps edges2shoes edges2handbags night2day)
DEFAULT_BASE_URL="http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"

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

if [[ "$NAME" == "cityscapes" ]]; then
    cat >&2 <<'EOF'
error: cityscapes is not downloaded by this script: its licence forbids redistribution.
Register and download it yourself from https://www.cityscapes-dataset.com/ (gtFine and
leftImg8bit), put the photos and the label images in two folders with matching file names,
then build the A|B pairs with:
    python datasets/combine_A_and_B.py --fold_A PHOTOS --fold_B LABELS --fold_AB datasets/cityscapes
EOF
    exit 2
fi

known=0
for valid in "${VALID_NAMES[@]}"; do
    if [[ "$NAME" == "$valid" ]]; then
        known=1
    fi
done
if [[ $known -ne 1 ]]; then
    echo "error: unknown dataset '$NAME'" >&2
    usage
    exit 2
fi

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGET="$SCRIPT_DIR/$NAME"
if [[ -e "$TARGET" ]]; then
    echo "$TARGET already exists; nothing to do (remove it to download again)."
    exit 0
fi

BASE_URL="${PIX2PIX_DATASET_URL:-$DEFAULT_BASE_URL}"
URL="${BASE_URL%/}/$NAME.tar.gz"

# Work in a scratch folder inside datasets/ so the final move is a rename on the same file
# system, and a failed run never leaves a half-unpacked datasets/NAME behind.
WORK="$(mktemp -d "$SCRIPT_DIR/.download_${NAME}.XXXXXX")"
cleanup() {
    rm -rf "$WORK"
}
trap cleanup EXIT
ARCHIVE="$WORK/$NAME.tar.gz"

echo "Downloading $URL"
if command -v curl >/dev/null 2>&1; then
    curl -fL --progress-bar -o "$ARCHIVE" "$URL" || die "download failed: $URL"
elif [[ "$URL" == file://* ]]; then
    # wget cannot read file:// URLs; copy the local file instead.
    cp "${URL#file://}" "$ARCHIVE" || die "download failed: $URL"
elif command -v wget >/dev/null 2>&1; then
    wget -q --show-progress -O "$ARCHIVE" "$URL" || die "download failed: $URL"
else
    die "neither curl nor wget is installed; cannot download $URL"
fi

echo "Unpacking $NAME.tar.gz"
mkdir "$WORK/unpacked"
tar -xzf "$ARCHIVE" -C "$WORK/unpacked" || die "could not unpack the archive from $URL"
rm -f "$ARCHIVE"

if [[ -d "$WORK/unpacked/$NAME" ]]; then
    # The usual layout: the archive holds a single top folder NAME/.
    mv "$WORK/unpacked/$NAME" "$TARGET"
else
    # Anything else: keep the archive's contents as they are, under datasets/NAME/.
    echo "warning: the archive has no top-level '$NAME/' folder; its contents go into $TARGET as they are" >&2
    mv "$WORK/unpacked" "$TARGET"
fi

echo "Done: $TARGET"
