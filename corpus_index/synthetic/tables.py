"""Astronomical tables of the Sphaera tradition, computed from formulas.

Every function returns a :class:`TableSpec`: the *content* of a table (its group), independent of how an
edition sets it in type. Angles are in degrees; values are printed sexagesimally (degrees and minutes, hours
and minutes), rounded to the nearest minute, without leading zeros, as the early printers set them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SIGNS = ["Aries", "Taurus", "Gemini", "Cancer", "Leo", "Virgo",
         "Libra", "Scorpius", "Sagittarius", "Capricornus", "Aquarius", "Pisces"]
SIGN_ABBREVIATIONS = ["Ari", "Tau", "Gem", "Can", "Leo", "Vir", "Lib", "Sco", "Sag", "Cap", "Aqu", "Pis"]
MONTHS = ["Ianuarius", "Februarius", "Martius", "Aprilis", "Maius", "Iunius",
          "Iulius", "Augustus", "September", "October", "November", "December"]
MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"]
CLIME_NAMES = ["Per Meroen", "Per Syenen", "Per Alexandriam", "Per Rhodum", "Per Romam",
               "Per Borysthenem", "Per Riphaeos"]

#: The historical maximal obliquities of the ecliptic used by the tables, in (degrees, minutes).
OBLIQUITIES = {"2328": (23, 28), "2330": (23, 30), "2333": (23, 33)}


@dataclass
class TableSpec:
    """Content of one table: what every edition of it prints.

    Attributes
    ----------
    group : str
        Ground-truth content id; editions of the same table share it.
    titles : list of str
        Latin headings an edition may choose from (same meaning).
    subtitle : str
        Second heading line (may contain digits).
    columns : list of (str, list of str)
        Column groups: a group header and the sub-headers of its columns.
    rows : list of list of str
        Cells, one list per row, as many cells as sub-headers in all groups together.
    numeric : list of bool
        Per column, whether its cells are numbers (right-aligned, subject to copying errors).
    note : str
        A short Latin canon explaining the table.
    values : dict
        The exact values behind the cells, for tests.
    block : int
        Natural grouping of the rows (e.g. 3 for a clime's beginning, middle and end); 0 lets the edition choose.
    """

    group: str
    titles: list[str]
    subtitle: str
    columns: list[tuple[str, list[str]]]
    rows: list[list[str]]
    numeric: list[bool]
    note: str = ""
    values: dict = field(default_factory=dict)
    block: int = 0

    @property
    def n_columns(self) -> int:
        return sum(len(sub) for _, sub in self.columns)


def sexagesimal(value: float) -> tuple[int, int]:
    """Split a non-negative value into whole units and sixtieths, rounded to the nearest sixtieth.

    >>> sexagesimal(23.5)
    (23, 30)
    """
    if value < 0:
        raise ValueError(f"sexagesimal: value must be non-negative, got {value}")
    total = int(math.floor(value * 60 + 0.5))
    return divmod(total, 60)


def dm(value: float) -> list[str]:
    """Cells for degrees and minutes (or hours and minutes)."""
    whole, minutes = sexagesimal(value)
    return [str(whole), str(minutes)]


def obliquity_degrees(key: str) -> float:
    deg, minutes = OBLIQUITIES[key]
    return deg + minutes / 60


def solar_declination(longitude: float, obliquity: float) -> float:
    """Declination of the sun at ecliptic ``longitude``: sin(dec) = sin(eps) sin(lambda)."""
    return math.degrees(math.asin(math.sin(math.radians(obliquity)) * math.sin(math.radians(longitude))))


def right_ascension(longitude: float, obliquity: float) -> float:
    """Right ascension of an ecliptic point, continuous in [0, 360] for longitude in [0, 360]."""
    lam, eps = math.radians(longitude), math.radians(obliquity)
    ra = math.degrees(math.atan2(math.cos(eps) * math.sin(lam), math.cos(lam))) % 360.0
    if longitude >= 360 - 1e-9:
        return 360.0
    return ra


def ascensional_difference(longitude: float, obliquity: float, latitude: float) -> float:
    """Ascensional difference: sin(AD) = tan(phi) tan(dec); positive for northern declinations."""
    dec = math.radians(solar_declination(longitude, obliquity))
    x = math.tan(math.radians(latitude)) * math.tan(dec)
    return math.degrees(math.asin(max(-1.0, min(1.0, x))))


def oblique_ascension(longitude: float, obliquity: float, latitude: float) -> float:
    """Oblique ascension at ``latitude``: right ascension minus the ascensional difference."""
    return right_ascension(longitude, obliquity) - ascensional_difference(longitude, obliquity, latitude)


def day_length(longitude: float, obliquity: float, latitude: float) -> float:
    """Length of the day in hours when the sun is at ``longitude`` (no refraction)."""
    return 2 * (90.0 + ascensional_difference(longitude, obliquity, latitude)) / 15.0


def clime_latitude(longest_day_hours: float, obliquity: float) -> float:
    """Latitude whose longest day lasts ``longest_day_hours``: cos(H0) = -tan(phi) tan(eps)."""
    if not 12.0 <= longest_day_hours < 24.0:
        raise ValueError(f"longest_day_hours must be in [12, 24), got {longest_day_hours}")
    half_arc = math.radians(longest_day_hours / 2 * 15.0)
    return math.degrees(math.atan(-math.cos(half_arc) / math.tan(math.radians(obliquity))))


def julian_day_number(year: int, month: int, day: int) -> int:
    """Julian day number of a date in the Julian calendar (in use for all of 1472-1582)."""
    a = (14 - month) // 12
    y = year + 4800 - a
    m = month + 12 * a - 3
    return day + (153 * m + 2) // 5 + 365 * y + y // 4 - 32083


def sun_longitude(year: int, month: int, day: int) -> float:
    """Tropical longitude of the sun at noon (low-precision almanac formula), degrees in [0, 360)."""
    n = julian_day_number(year, month, day) - 2451545.0
    mean_longitude = 280.460 + 0.9856474 * n
    anomaly = math.radians(357.528 + 0.9856003 * n)
    return (mean_longitude + 1.915 * math.sin(anomaly) + 0.020 * math.sin(2 * anomaly)) % 360.0


def declination_table(obliquity_key: str) -> TableSpec:
    """Sun's declination for each degree of Aries, Taurus and Gemini (and by symmetry the other signs)."""
    eps = obliquity_degrees(obliquity_key)
    deg, minutes = OBLIQUITIES[obliquity_key]
    rows, values = [], {}
    for g in range(1, 31):
        row = [str(g)]
        for s in range(3):
            dec = solar_declination(30 * s + g, eps)
            values[(s, g)] = dec
            row += dm(dec)
        rows.append(row)
    return TableSpec(
        group=f"declinatio-{obliquity_key}",
        titles=["Tabula declinationis solis", "Tabula declinationis Solis ab aequinoctiali",
                "Declinatio solis"],
        subtitle=f"Maxima declinatio gr. {deg} min. {minutes}",
        columns=[("Gr.", [""])] + [(SIGNS[s], ["Gr.", "Min."]) for s in range(3)],
        rows=rows, numeric=[True] * 7,
        note="Hec tabula declinationem solis ab aequinoctiali ostendit in omni gradu signorum; "
             "eadem est in signis oppositis, sed versus polum antarcticum.",
        values=values)


def climata_table(obliquity_key: str) -> TableSpec:
    """The seven climes: beginning, middle and end by quarter hours of the longest day (13 h to 16 h middles)."""
    eps = obliquity_degrees(obliquity_key)
    deg, minutes = OBLIQUITIES[obliquity_key]
    rows, values = [], {}
    for c in range(7):
        middle = 13.0 + 0.5 * c
        for part, hours in (("Princ.", middle - 0.25), ("Medium", middle), ("Finis", middle + 0.25)):
            phi = clime_latitude(hours, eps)
            values[(c + 1, part)] = phi
            rows.append([ROMAN[c] if part == "Medium" else "", CLIME_NAMES[c] if part == "Medium" else "",
                         part] + dm(hours) + dm(24.0 - hours) + dm(phi) + dm(90.0 - phi))
    return TableSpec(
        group=f"climata-{obliquity_key}",
        titles=["Tabula climatum", "Tabula septem climatum", "Climata et latitudines eorum"],
        subtitle=f"Ad declinationem maximam gr. {deg} min. {minutes}",
        columns=[("Clima", ["", "", ""]), ("Dies max.", ["Hor.", "Min."]), ("Nox min.", ["Hor.", "Min."]),
                 ("Latitudo", ["Gr.", "Min."]), ("Elev. aequ.", ["Gr.", "Min."])],
        rows=rows, numeric=[False, False, False] + [True] * 8,
        note="Clima est spacium terrae in quo dies maximus variatur per dimidium horae; "
             "principium, medium et finis cuiuslibet climatis hic ponuntur.",
        values=values, block=3)


def rising_signs_table(obliquity_key: str, latitudes: tuple[float, ...], labels: tuple[str, ...]) -> TableSpec:
    """Ascensions of each sign: in the right sphere and in the oblique sphere at ``latitudes``."""
    eps = obliquity_degrees(obliquity_key)
    rows, values = [], {}
    for s in range(12):
        a, b = 30 * s, 30 * (s + 1)
        row = [SIGNS[s]]
        right = right_ascension(b, eps) - right_ascension(a, eps)
        values[(s, "recta")] = right
        row += dm(right)
        for phi in latitudes:
            oblique = oblique_ascension(b, eps, phi) - oblique_ascension(a, eps, phi)
            values[(s, phi)] = oblique
            row += dm(oblique)
        rows.append(row)
    lat_key = "-".join(str(int(round(p * 60))) for p in latitudes)
    return TableSpec(
        group=f"ascensiones-{obliquity_key}-{lat_key}",
        titles=["Ascensiones signorum", "Tabula ascensionum signorum", "De ascensionibus signorum"],
        subtitle="In sphaera recta et obliqua",
        columns=[("Signa", [""]), ("Recta", ["Gr.", "Min."])] + [(lab, ["Gr.", "Min."]) for lab in labels],
        rows=rows, numeric=[False] + [True] * (2 + 2 * len(latitudes)),
        note="Signa quae in sphaera obliqua breviter oriuntur, longe occidunt; et econverso.",
        values=values)


def _per_degree_rows(quantity, eps, latitude):
    """Rows "degree | value in each of the first three signs" (sexagesimal) of quantity(longitude, eps, latitude)."""
    rows, values = [], {}
    for g in range(1, 31):
        row = [str(g)]
        for s in range(3):
            value = quantity(30 * s + g, eps, latitude)
            values[(s, g)] = value
            row += dm(value)
        rows.append(row)
    return rows, values


def oblique_ascension_table(obliquity_key: str, latitude: float) -> TableSpec:
    """Oblique ascension from the beginning of Aries for each degree of the first three signs."""
    lat_d, lat_m = sexagesimal(latitude)
    rows, values = _per_degree_rows(oblique_ascension, obliquity_degrees(obliquity_key), latitude)
    return TableSpec(
        group=f"ascensio-obliqua-{obliquity_key}-{lat_d}{lat_m:02d}",
        titles=["Tabula ascensionum obliquarum", "Ascensiones obliquae", "Tabula ascensionum in sphaera obliqua"],
        subtitle=f"Ad latitudinem gr. {lat_d} min. {lat_m}",
        columns=[("Gr.", [""])] + [(SIGNS[s], ["Gr.", "Min."]) for s in range(3)],
        rows=rows, numeric=[True] * 7,
        note="Ascensiones numerantur a principio Arietis secundum successionem signorum.",
        values=values)


def day_length_table(obliquity_key: str, latitude: float) -> TableSpec:
    """Length of the day (hours, minutes) for each degree of the sun in the first three signs."""
    lat_d, lat_m = sexagesimal(latitude)
    rows, values = _per_degree_rows(day_length, obliquity_degrees(obliquity_key), latitude)
    return TableSpec(
        group=f"quantitas-dierum-{obliquity_key}-{lat_d}{lat_m:02d}",
        titles=["Tabula quantitatis dierum", "Quantitas diei artificialis", "Tabula longitudinis dierum"],
        subtitle=f"Ad elevationem poli gr. {lat_d} min. {lat_m}",
        columns=[("Gr.", [""])] + [(SIGNS[s], ["Hor.", "Min."]) for s in range(3)],
        rows=rows, numeric=[True] * 7,
        note="Dies artificialis est tempus a solis ortu usque ad eius occasum.",
        values=values)


def sun_place_table(first_month: int, year: int = 1500) -> TableSpec:
    """Sun's place in the zodiac (sign, degree, minute) for each day of three months of ``year``."""
    if first_month not in (1, 4, 7, 10):
        raise ValueError(f"first_month must be 1, 4, 7 or 10, got {first_month}")
    months = [first_month + i for i in range(3)]
    rows, values = [], {}
    last_sign = {m: None for m in months}
    for d in range(1, 32):
        row = [str(d)]
        for m in months:
            if d > MONTH_DAYS[m - 1]:
                row += ["", "", ""]
                continue
            lam = sun_longitude(year, m, d)
            total = int(math.floor(lam * 60 + 0.5)) % (360 * 60)
            sign, rest = divmod(total, 30 * 60)
            values[(m, d)] = lam
            # The sign is printed where it starts, as in the almanacs.
            row += [SIGN_ABBREVIATIONS[sign] if sign != last_sign[m] else ""] + [str(v) for v in divmod(rest, 60)]
            last_sign[m] = sign
        rows.append(row)
    return TableSpec(
        group=f"locus-solis-{year}-{first_month:02d}",
        titles=["Tabula loci solis", "Verus locus solis in zodiaco", "Locus solis per dies mensium"],
        subtitle=f"Ad annum Domini {year}",
        columns=[("Dies", [""])] + [(MONTHS[m - 1], ["Sig.", "Gr.", "Min."]) for m in months],
        rows=rows, numeric=[True] + [False, True, True] * 3,
        note="Quaere diem mensis in linea sinistra et in directo sub mense invenies locum solis.",
        values=values)


def table_groups() -> list[TableSpec]:
    """All table contents of the demo corpus, one per ground-truth group, in a fixed order."""
    return [
        declination_table("2328"),
        declination_table("2330"),
        declination_table("2333"),
        climata_table("2330"),
        climata_table("2333"),
        rising_signs_table("2330", (clime_latitude(13.0, 23.5), clime_latitude(15.0, 23.5),
                                    clime_latitude(16.0, 23.5)), ("Clima I", "Clima V", "Clima VII")),
        rising_signs_table("2328", (45 + 26 / 60, 48 + 50 / 60, 51 + 52 / 60), ("Venetiae", "Parisius", "Wittenb.")),
        oblique_ascension_table("2330", 48 + 50 / 60),
        day_length_table("2330", 45 + 26 / 60),
        sun_place_table(1),
        sun_place_table(4),
        sun_place_table(7),
        sun_place_table(10),
    ]
