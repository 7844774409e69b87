"""The generator registry: one table from a --netG name to its GeneratorSpec (how to build it, whether it is a U-Net,
its depth, the input sizes it takes). models/generators.py registers the built-in generators when imported."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from torch import nn

# builder(input_nc, output_nc, *, depth, ngf, norm, dropout, upsample, downsample, max_mult, attention,
#         grad_checkpoint) -> nn.Module, every argument explicit: define_G passes them from a GeneratorConfig
# (dropout is 0 with --no_dropout; depth is the spec's unet_depth). A builder that is no U-Net takes the U-Net-only
# ones (depth, upsample, ... grad_checkpoint: always their defaults there) as **unet_only and ignores them.
GeneratorBuilder = Callable[..., nn.Module]


# What a generator does beyond fake_B = G(real_A), for the training code and the option rules:
#   first_output: it keeps an intermediate translation in .first during a pass with gradients (Double U-Net),
#     which the loss supervises with L1 (--lambda_first);
#   coarse_to_fine: a global generator at half resolution with a full-resolution enhancer; .fix_global(True)
#     trains the enhancer alone (--fix_global_epochs), and init_target() says that a plain U-Net's weights
#     initialise the global generator (--init_from a run at half the size).
TRAITS = ("first_output", "coarse_to_fine")


@dataclass(frozen=True)
class GeneratorSpec:
    """A registered generator. depth: a U-Net's number of 2x downsamplings (--num_downs overrides it); None for
    any other generator, whose inputs must be multiples of `multiple` instead. traits: some of TRAITS."""

    name: str
    builder: GeneratorBuilder
    depth: int | None
    multiple: int | None
    traits: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if (self.depth is None) == (self.multiple is None):
            raise ValueError(f"generator {self.name!r}: give a U-Net's depth or another generator's size multiple")
        unknown = sorted(self.traits - set(TRAITS))
        if unknown:
            raise ValueError(f"generator {self.name!r}: unknown traits {unknown}; known: {', '.join(TRAITS)}")

    @property
    def is_unet(self) -> bool:
        """The U-Net-only options (--num_downs, --upsample, --attention, ...) apply to it."""
        return self.depth is not None

    def unet_depth(self, num_downs: int | None) -> int | None:
        """2x downsamplings with --num_downs (None: the spec's own); None for a generator that is no U-Net."""
        if self.depth is None:
            return None
        return num_downs if num_downs is not None else self.depth

    def size_multiple(self, num_downs: int | None) -> int:
        """Input sides must be a multiple of this: 2**depth for a U-Net, `multiple` for another generator."""
        depth = self.unet_depth(num_downs)
        return 2**depth if depth is not None else self.multiple  # type: ignore[return-value]


_GENERATORS: dict[str, GeneratorSpec] = {}


def register_generator(
    name: str, *, depth: int | None = None, size_multiple: int | None = None, traits: Sequence[str] = ()
) -> Callable[[GeneratorBuilder], GeneratorBuilder]:
    """A decorator that registers its builder as --netG `name`: a U-Net with its depth (2x downsamplings), or
    another generator with the multiple its input sides must be; traits: some of TRAITS. Returns the builder
    unchanged."""

    def register(builder: GeneratorBuilder) -> GeneratorBuilder:
        if name in _GENERATORS:
            raise ValueError(f"generator {name!r} is already registered")
        _GENERATORS[name] = GeneratorSpec(name, builder, depth, size_multiple, frozenset(traits))
        return builder

    return register


def list_generators() -> list[str]:
    """The registered --netG names, in the order of registration."""
    return list(_GENERATORS)


def generator_spec(name: str) -> GeneratorSpec:
    """The spec registered as `name`; ValueError naming the valid names if there is none."""
    try:
        return _GENERATORS[name]
    except KeyError:
        raise ValueError(f"netG must be one of {', '.join(_GENERATORS)}, not {name!r}") from None


class GeneratorNames(Sequence[str]):
    """The registered names, read each time they are used: GeneratorConfig.netG's choices (argparse's and
    check_bounds') take in a generator registered after models.config was imported."""

    def __getitem__(self, i):  # type: ignore[override]
        return list_generators()[i]

    def __len__(self) -> int:
        return len(_GENERATORS)

    def __iter__(self) -> Iterator[str]:
        return iter(list_generators())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in _GENERATORS

    def __repr__(self) -> str:
        return f"GeneratorNames({list_generators()!r})"


GENERATOR_NAMES = GeneratorNames()
