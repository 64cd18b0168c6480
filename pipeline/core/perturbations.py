"""Perturbation type codes, the observation schema, and strain-id / allele-name parsing.

Phenotype tables (Kuzmin 2018/2020, Costanzo 2016) name each mutant strain by a
*strain id* and a human-readable *allele name*:

=================================  ===================  ==========================================
strain id                          allele name          perturbed genes (type)
=================================  ===================  ==========================================
``YAL001C_tsq508``                 ``tfc3-g349e``       YAL001C (temperature_sensitive)
``YAL002W_sn123`` / ``_dma1``      ``vps8`` / ``vps8Δ``  YAL002W (deletion)
``YAL001C_damp174``                ``tfc3_damp``        YAL001C (knockdown)
``YBR160W+YDL227C_tsq508``         ``cdc28-4+hoΔ``      YBR160W (temperature_sensitive); HO marker removed
``YAL015C+YDL227C_tm461``          ``ntg1Δ+hoΔ``        YAL015C (deletion, from ``Δ``); HO marker removed
``YBR160W+YML107C_tm801``          ``cdc28-4+pml39Δ``   YBR160W (temperature_sensitive), YML107C (deletion)
=================================  ===================  ==========================================

Rules (:func:`parse_strains`):

- The systematic names are the part before the first ``_``, split on ``+``
  (upper-cased). The *allele kind* is the run of letters right after the ``_``,
  case-insensitive, mapped by :data:`ALLELE_KINDS`. A strain id without one, or with
  a kind not in the table, is *unknown*: the readers raise an error naming the file
  and row, or skip and count it (``on_unknown="skip"``).
- ``YDL227C`` (HO, :data:`MARKERS`) as one member of a ``+`` id is the marker the
  query strains were built with, not a perturbation: it is removed (and counted).
  Alone (``YDL227C_dma1``, the ho deletion of the array) it is a perturbation.
- The allele name is split on ``+`` the same way and aligned with the id's members
  by position (the published tables write both in the same order). It decides the
  type of a member only when the id alone cannot, i.e. when the id is *ambiguous*:
  its kind is ``tm`` (a multiple-mutant query, any mix of alleles) or it names more
  than one gene besides markers (one suffix for several genes). Then, per member:
  a ``Δ`` (U+0394, or the look-alike U+2206) in its allele part means deletion;
  ``damp`` (any case) means knockdown; otherwise the kind's type, and for ``tm``
  temperature_sensitive (Kuzmin's multiple-mutant queries combine deletions of
  nonessential genes with ts alleles of essential ones). An ambiguous ``tm`` id whose
  allele name does not split into as many parts is unknown. For an unambiguous id
  the suffix wins: Costanzo writes deletion alleles without ``Δ`` (``vps8``), so the
  absence of ``Δ`` says nothing.
- Codes 4 (overexpression, suffix ``oe``: no published table here uses it; chosen
  for future sources) and 5 (addition of a heterologous gene) are part of the code
  table but no published table here produces 5; engineered strains (any number of
  deletions and additions in one strain) carry it, and the dataset stage stores strains
  of any size (:mod:`pipeline.dataset.encode`, long keys).

Everything is vectorised polars over the (few thousand) distinct strains; readers
parse distinct strain ids once and map rows to them.
"""

from __future__ import annotations

import polars as pl

#: Perturbation type codes (uint8) stored in the dataset's ``types`` column; 0 is never stored.
CODES: dict[str, int] = {
    "deletion": 1,
    "temperature_sensitive": 2,
    "knockdown": 3,
    "overexpression": 4,
    "addition": 5,
    "suppressor": 6,
}
CODE_NAMES: dict[int, str] = {v: k for k, v in CODES.items()}

#: Marks an ambiguous allele kind whose per-gene types come from the allele name (``tm``).
MIXED = 0
#: Allele kind (letters after the first ``_`` of a strain id, lower-cased) -> type code.
ALLELE_KINDS: dict[str, int] = {
    "sn": CODES["deletion"],  # SGA query deletion (natMX), Costanzo NxN / ExN
    "dma": CODES["deletion"],  # deletion mutant array (kanMX)
    "del": CODES["deletion"],
    "tsq": CODES["temperature_sensitive"],  # ts query
    "tsa": CODES["temperature_sensitive"],  # ts array
    "ts": CODES["temperature_sensitive"],
    "damp": CODES["knockdown"],  # Decreased Abundance by mRNA Perturbation
    "oe": CODES["overexpression"],
    "s": CODES["suppressor"],  # Costanzo "_S<n>": suppressor / other allele of a known gene
    "supp": CODES["suppressor"],
    "tm": MIXED,  # Kuzmin multiple-mutant query: types from the allele name
}

#: Genes that are construction markers when they are one member of a ``+`` strain id.
MARKERS: dict[str, str] = {"YDL227C": "HO"}
#: Characters that mark a deletion allele (Greek capital delta, and the increment sign it is often typed as).
DELTA_CHARS = ("\u0394", "\u2206")


#: Columns of one phenotype observation, as every phenotype reader returns them (in this order).
OBSERVATION_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String,  # kuzmin2018 / kuzmin2020 / costanzo2016
    "source_file": pl.String,  # the path the reader was given
    "source_row": pl.Int64,  # 1-based data row (the header and any title row not counted)
    "screen": pl.String,  # Costanzo Arraytype/Temp, Kuzmin 2020 screen id; null if none
    "genes": pl.List(pl.String),  # systematic names of the perturbed genes, marker removed, sorted
    "types": pl.List(pl.UInt8),  # CODES, aligned with genes
    "fitness": pl.Float64,  # double / triple mutant fitness
    "fitness_std": pl.Float64,  # its standard deviation
    "interaction": pl.Float64,  # adjusted genetic interaction score (epsilon, or tau for trigenic)
    "interaction_raw": pl.Float64,  # raw score (Kuzmin); null where not published
    "interaction_p": pl.Float64,  # p-value of the interaction score
    "smf_query": pl.Float64,  # query strain fitness (single, or double for Kuzmin trigenic queries)
    "smf_array": pl.Float64,  # array strain single mutant fitness
    "n_perturbed": pl.UInt8,  # len(genes)
}
#: The float value columns of :data:`OBSERVATION_SCHEMA`.
VALUE_COLUMNS = [k for k, v in OBSERVATION_SCHEMA.items() if v == pl.Float64]

#: Schema of :func:`parse_strains`' result.
STRAIN_SCHEMA: dict[str, pl.DataType] = {
    "genes": pl.List(pl.String),  # systematic names in id order, markers removed
    "types": pl.List(pl.UInt8),  # aligned with genes
    "kind": pl.String,  # allele kind letters, lower-cased ("" if none)
    "markers_removed": pl.UInt8,
    "problem": pl.String,  # null if the strain parsed, else why not (for error messages)
}

_KIND_RE = r"^([A-Za-z]+)"


def parse_strains(ids: pl.Series, alleles: pl.Series | None = None) -> pl.DataFrame:
    """Parse strain ids (with their allele names) into perturbed genes and type codes.

    Returns one row per input row (same order) with the columns of
    :data:`STRAIN_SCHEMA`; ``genes`` and ``types`` are null where ``problem`` is set.

    >>> df = parse_strains(pl.Series(["YAL001C_tsq508", "YAL015C+YDL227C_tm461", "YOR001W_x1"]),
    ...                    pl.Series(["tfc3-g349e", "ntg1Δ+hoΔ", "foo"]))
    >>> df["genes"].to_list(), df["types"].to_list(), df["markers_removed"].to_list()
    ([['YAL001C'], ['YAL015C'], None], [[2], [1], None], [0, 1, 0])
    >>> df["problem"][2]
    "unknown allele kind 'x'"
    """
    n = len(ids)
    allele = alleles.cast(pl.String) if alleles is not None else pl.Series([None] * n, dtype=pl.String)
    df = pl.DataFrame({"id": ids.cast(pl.String), "allele": allele}).with_row_index("_i")
    sid = pl.col("id").str.strip_chars()
    df = df.with_columns(
        sid.str.splitn("_", 2).struct.field("field_0").alias("_body"),
        sid.str.splitn("_", 2).struct.field("field_1").alias("_suffix"),
    ).with_columns(
        pl.col("_suffix").str.extract(_KIND_RE, 1).str.to_lowercase().fill_null("").alias("kind"),
    ).with_columns(
        pl.col("kind").replace_strict(ALLELE_KINDS, default=None, return_dtype=pl.Int16).alias("_code"),
        pl.col("_body").str.split("+").alias("_members"),
        pl.col("allele").str.split("+").alias("_parts"),
    ).with_columns(
        (pl.col("_parts").list.len() == pl.col("_members").list.len()).fill_null(False).alias("_aligned"),
    )

    # one row per member of each id, with its allele part when the two align
    m = (df.select("_i", "_code", "_aligned", "_members", "_parts")
         .with_columns(pl.int_ranges(0, pl.col("_members").list.len()).alias("_pos"))
         .explode("_members", "_pos")
         .with_columns(
             pl.col("_members").str.strip_chars().str.to_uppercase().alias("gene"),
             pl.when(pl.col("_aligned")).then(pl.col("_parts").list.get(pl.col("_pos"), null_on_oob=True))
             .alias("part"),
             pl.len().over("_i").alias("_n_members"),
         ))
    is_marker = pl.col("gene").is_in(list(MARKERS)) & (pl.col("_n_members") > 1)
    m = m.with_columns(is_marker.alias("_marker"))
    m = m.with_columns((~pl.col("_marker")).sum().over("_i").alias("_n_genes"))
    part = pl.col("part").fill_null("")
    deleted = pl.any_horizontal([part.str.contains(c, literal=True) for c in DELTA_CHARS])
    ambiguous = (pl.col("_code") == MIXED) | (pl.col("_n_genes") > 1)
    code = (pl.when(~ambiguous).then(pl.col("_code"))
            .when(pl.col("part").is_not_null() & deleted).then(pl.lit(CODES["deletion"]))
            .when(pl.col("part").is_not_null() & part.str.to_lowercase().str.contains("damp", literal=True))
            .then(pl.lit(CODES["knockdown"]))
            .when((pl.col("_code") == MIXED) & pl.col("part").is_not_null())
            .then(pl.lit(CODES["temperature_sensitive"]))
            .when(pl.col("_code") != MIXED).then(pl.col("_code"))
            .otherwise(None))
    per_id = (m.with_columns(code.cast(pl.UInt8).alias("type"))
              .group_by("_i")
              .agg(pl.col("gene").filter(~pl.col("_marker")).sort_by(pl.col("_pos").filter(~pl.col("_marker")))
                   .alias("genes"),
                   pl.col("type").filter(~pl.col("_marker")).sort_by(pl.col("_pos").filter(~pl.col("_marker")))
                   .alias("types"),
                   pl.col("_marker").sum().cast(pl.UInt8).alias("markers_removed"),
                   (pl.col("gene").fill_null("") == "").any().alias("_empty_gene"),
                   pl.col("type").filter(~pl.col("_marker")).is_null().any().alias("_untyped")))
    df = df.join(per_id, on="_i", how="left").sort("_i")

    problem = (
        pl.when(pl.col("id").is_null() | (pl.col("id").str.strip_chars() == "")).then(pl.lit("an empty strain id"))
        .when(pl.col("_suffix").is_null()).then(pl.lit("no allele suffix ('_' and an allele kind) in the strain id"))
        .when(pl.col("kind") == "").then(pl.lit("no allele kind letters after '_'"))
        .when(pl.col("_code").is_null()).then(pl.format("unknown allele kind '{}'", pl.col("kind")))
        .when(pl.col("_empty_gene")).then(pl.lit("an empty systematic name in the strain id"))
        .when(pl.col("genes").list.len() == 0).then(pl.lit("only marker genes in the strain id"))
        .when(pl.col("_untyped"))
        .then(pl.format("an allele name with one '+'-separated part per gene of a '{}' strain (got {})",
                        pl.col("kind"), pl.col("allele").fill_null("nothing")))
        .otherwise(None)
    )
    out = df.with_columns(problem.alias("problem"))
    ok = pl.col("problem").is_null()
    return out.select(
        pl.when(ok).then(pl.col("genes")).alias("genes"),
        pl.when(ok).then(pl.col("types")).alias("types"),
        "kind",
        pl.col("markers_removed").fill_null(0).cast(pl.UInt8),
        "problem",
    ).cast(STRAIN_SCHEMA)  # type: ignore[arg-type]


def known_kinds_text() -> str:
    """The accepted allele kinds, for error messages."""
    return ", ".join(k if k != "s" else "S" for k in ALLELE_KINDS)


def sorted_members(genes: pl.Expr, types: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``genes`` sorted, ``types`` permuted alike (ties, the same gene twice, by type): lists of any length.

    The general path of the readers (strains of several genes); two single-gene sides
    go through :func:`sorted_pair`, which is several times faster.
    """
    # one list [g0..gk, t0..tk]; inside eval its halves are joined elementwise into the sort key "g\x00t"
    half = pl.element().len() // 2
    perm = pl.concat_list(genes, types.cast(pl.List(pl.String))).list.eval(
        (pl.element().head(half) + "\x00" + pl.element().tail(half)).arg_sort())
    return genes.list.gather(perm), types.list.gather(perm)


def sorted_pair(g1: pl.Expr, t1: pl.Expr, g2: pl.Expr, t2: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(genes, types) list expressions of two single genes, sorted by gene then type.

    ``concat_arr(...).arr.to_list()`` is used because it is ~3x faster than
    ``concat_list`` on strings (polars 2.1).
    """
    swap = (g1 > g2) | ((g1 == g2) & (t1 > t2))
    genes = pl.concat_arr(pl.when(swap).then(g2).otherwise(g1),
                          pl.when(swap).then(g1).otherwise(g2)).arr.to_list()
    types = pl.concat_arr(pl.when(swap).then(t2).otherwise(t1),
                          pl.when(swap).then(t1).otherwise(t2)).arr.to_list()
    return genes, types


def _compare_swap(a: int, b: int) -> list[pl.Expr]:
    """One comparator of a sorting network over columns ``_g<i>`` / ``_t<i>`` (nulls last)."""
    ga, ta, gb, tb = pl.col(f"_g{a}"), pl.col(f"_t{a}"), pl.col(f"_g{b}"), pl.col(f"_t{b}")
    swap = ((ga.is_null() & gb.is_not_null()) | (ga > gb) | ((ga == gb) & (ta > tb))).fill_null(False)
    return [pl.when(swap).then(gb).otherwise(ga).alias(f"_g{a}"), pl.when(swap).then(ga).otherwise(gb).alias(f"_g{b}"),
            pl.when(swap).then(tb).otherwise(ta).alias(f"_t{a}"), pl.when(swap).then(ta).otherwise(tb).alias(f"_t{b}")]


def sorted_upto3(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Add ``_genes`` / ``_types`` (lists of 2 or 3) from columns ``_g0.._g2`` / ``_t0.._t2``; ``_g1`` may be null.

    A three-comparator sorting network on scalar columns (nulls last), then a fixed-width
    array per row length: ~5x faster than sorting list columns (Kuzmin digenic + trigenic rows).
    """
    lf = lf.with_columns(_compare_swap(0, 1)).with_columns(_compare_swap(1, 2)).with_columns(_compare_swap(0, 1))
    two = pl.col("_g2").is_null()
    return lf.with_columns(
        pl.when(two).then(pl.concat_arr("_g0", "_g1").arr.to_list())
        .otherwise(pl.concat_arr("_g0", "_g1", "_g2").arr.to_list()).alias("_genes"),
        pl.when(two).then(pl.concat_arr("_t0", "_t1").arr.to_list())
        .otherwise(pl.concat_arr("_t0", "_t1", "_t2").arr.to_list()).alias("_types"),
    )
