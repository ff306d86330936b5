"""UTM: WGS84 latitude/longitude conversions, the :class:`UtmOrigin` of a local frame, and the change
between two origins.

Every drive's ``map`` frame is local ENU anchored at a UTM point (its origin): positions are
``(easting - E0, northing - N0, up - U0)``. Two drives in the same UTM zone share their axes, so a
position changes frame by a translation (:meth:`UtmOrigin.offset_to`); drives whose origins cannot be
related (unknown origin, another zone) are refused with :class:`~vbl_ros.errors.FrameMismatchError`.

Conversions are pure numpy (Krüger series to sixth order, sub-millimetre in a zone). Zones are given
as strings such as ``"30U"`` (number and latitude band, as RobotCar writes them) or as a number with
``northern``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vbl_ros.errors import ConfigError, FrameMismatchError

__all__ = [
    "WGS84_A",
    "WGS84_F",
    "UtmOrigin",
    "change_frame",
    "latlon_to_utm",
    "utm_to_latlon",
    "utm_zone_number",
    "utm_zone_string",
]

WGS84_A = 6378137.0
WGS84_F = 1.0 / 298.257223563
_K0 = 0.9996
_FALSE_EASTING = 500000.0
_FALSE_NORTHING_SOUTH = 10000000.0
_BANDS = "CDEFGHJKLMNPQRSTUVWX"

_N = WGS84_F / (2.0 - WGS84_F)
_E = np.sqrt(WGS84_F * (2.0 - WGS84_F))
# Rectifying radius and the Krüger coefficients (Karney 2011, eqs. 14, 35, 36).
_A_RECT = WGS84_A / (1.0 + _N) * (1.0 + _N**2 / 4.0 + _N**4 / 64.0 + _N**6 / 256.0)
_ALPHA = (
    _N / 2 - 2 * _N**2 / 3 + 5 * _N**3 / 16 + 41 * _N**4 / 180 - 127 * _N**5 / 288 + 7891 * _N**6 / 37800,
    13 * _N**2 / 48 - 3 * _N**3 / 5 + 557 * _N**4 / 1440 + 281 * _N**5 / 630 - 1983433 * _N**6 / 1935360,
    61 * _N**3 / 240 - 103 * _N**4 / 140 + 15061 * _N**5 / 26880 + 167603 * _N**6 / 181440,
    49561 * _N**4 / 161280 - 179 * _N**5 / 168 + 6601661 * _N**6 / 7257600,
    34729 * _N**5 / 80640 - 3418889 * _N**6 / 1995840,
    212378941 * _N**6 / 319334400,
)
_BETA = (
    _N / 2 - 2 * _N**2 / 3 + 37 * _N**3 / 96 - _N**4 / 360 - 81 * _N**5 / 512 + 96199 * _N**6 / 604800,
    _N**2 / 48 + _N**3 / 15 - 437 * _N**4 / 1440 + 46 * _N**5 / 105 - 1118711 * _N**6 / 3870720,
    17 * _N**3 / 480 - 37 * _N**4 / 840 - 209 * _N**5 / 4480 + 5569 * _N**6 / 90720,
    4397 * _N**4 / 161280 - 11 * _N**5 / 504 - 830251 * _N**6 / 7257600,
    4583 * _N**5 / 161280 - 108847 * _N**6 / 3991680,
    20648693 * _N**6 / 638668800,
)


def utm_zone_number(longitude: float) -> int:
    """The UTM zone number of a longitude in degrees (without the Norway/Svalbard exceptions)."""
    return int(np.floor((longitude + 180.0) / 6.0)) % 60 + 1


def utm_zone_string(latitude: float, longitude: float) -> str:
    """The zone with its latitude band, e.g. ``"30U"`` for Oxford."""
    band = _BANDS[int(np.clip(np.floor((latitude + 80.0) / 8.0), 0, len(_BANDS) - 1))]
    return f"{utm_zone_number(longitude)}{band}"


def _parse_zone(zone: int | str, northern: bool | None) -> tuple[int, bool]:
    if isinstance(zone, str):
        text = zone.strip().upper()
        digits = text.rstrip(_BANDS + "ABYZIO")
        band = text[len(digits) :]
        try:
            number = int(digits)
        except ValueError as err:
            raise ConfigError(f"invalid UTM zone {zone!r}; expected e.g. '30U' or 30") from err
        if band and northern is None:
            northern = band >= "N"
    else:
        number = int(zone)
    if not 1 <= number <= 60:
        raise ConfigError(f"invalid UTM zone number {number}; expected 1..60")
    return number, True if northern is None else bool(northern)


def _central_meridian(number: int) -> float:
    return np.radians(-183.0 + 6.0 * number)


def latlon_to_utm(
    latitude: np.ndarray | float, longitude: np.ndarray | float, zone: int | str | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(easting, northing, zone)`` of WGS84 latitudes/longitudes in degrees.

    ``zone`` defaults to the zone of the first point; give it to keep a whole track in one zone.
    """
    lat = np.radians(np.asarray(latitude, dtype=float))
    lon = np.asarray(longitude, dtype=float)
    if zone is None:
        zone = utm_zone_string(float(np.ravel(np.degrees(lat))[0]), float(np.ravel(lon)[0]))
    number, northern = _parse_zone(zone, None)
    dlon = np.radians(lon) - _central_meridian(number)
    # Conformal latitude.
    with np.errstate(divide="ignore"):  # the poles: arctanh(1) = inf gives t = inf, which works
        t = np.sinh(np.arctanh(np.sin(lat)) - _E * np.arctanh(_E * np.sin(lat)))
    xi_p = np.arctan2(t, np.cos(dlon))
    eta_p = np.arctanh(np.sin(dlon) / np.sqrt(1.0 + t * t))
    xi, eta = xi_p.copy(), eta_p.copy()
    for j, alpha in enumerate(_ALPHA, start=1):
        xi = xi + alpha * np.sin(2 * j * xi_p) * np.cosh(2 * j * eta_p)
        eta = eta + alpha * np.cos(2 * j * xi_p) * np.sinh(2 * j * eta_p)
    easting = _FALSE_EASTING + _K0 * _A_RECT * eta
    northing = _K0 * _A_RECT * xi + (0.0 if northern else _FALSE_NORTHING_SOUTH)
    return easting, northing, str(zone)


def utm_to_latlon(
    easting: np.ndarray | float,
    northing: np.ndarray | float,
    zone: int | str,
    *,
    northern: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 ``(latitude, longitude)`` in degrees of UTM coordinates in ``zone`` (e.g. ``"30U"``)."""
    number, northern = _parse_zone(zone, northern)
    x = np.asarray(easting, dtype=float) - _FALSE_EASTING
    y = np.asarray(northing, dtype=float) - (0.0 if northern else _FALSE_NORTHING_SOUTH)
    xi = y / (_K0 * _A_RECT)
    eta = x / (_K0 * _A_RECT)
    xi_p, eta_p = xi.copy(), eta.copy()
    for j, beta in enumerate(_BETA, start=1):
        xi_p = xi_p - beta * np.sin(2 * j * xi) * np.cosh(2 * j * eta)
        eta_p = eta_p - beta * np.cos(2 * j * xi) * np.sinh(2 * j * eta)
    chi = np.arcsin(np.sin(xi_p) / np.cosh(eta_p))  # conformal latitude
    tau_p = np.tan(chi)
    # Solve tau from tau' by Newton's method (Karney 2011, eqs. 7-9, 19-21).
    tau = tau_p.copy()
    for _ in range(5):
        sigma = np.sinh(_E * np.arctanh(_E * tau / np.sqrt(1.0 + tau * tau)))
        tau_i = tau * np.sqrt(1.0 + sigma * sigma) - sigma * np.sqrt(1.0 + tau * tau)
        dtau = (
            (tau_p - tau_i)
            / np.sqrt(1.0 + tau_i * tau_i)
            * (1.0 + (1.0 - _E**2) * tau * tau)
            / ((1.0 - _E**2) * np.sqrt(1.0 + tau * tau))
        )
        tau = tau + dtau
    lat = np.degrees(np.arctan(tau))
    lon = np.degrees(_central_meridian(number) + np.arctan2(np.sinh(eta_p), np.cos(xi_p)))
    return lat, lon


@dataclass(frozen=True)
class UtmOrigin:
    """The UTM point a local ENU ``map`` frame is anchored at: ``(E0, N0, U0)`` metres in ``zone``.

    ``U0`` is the height of the origin (RobotCar: minus the INS's ``down`` at the first row).
    """

    easting: float
    northing: float
    up: float
    zone: str

    def __post_init__(self) -> None:
        _parse_zone(self.zone, None)  # refuses an invalid zone early
        if not all(np.isfinite((self.easting, self.northing, self.up))):
            raise ConfigError(f"UTM origin {self}: coordinates must be finite")

    @property
    def frame_id(self) -> str:
        """The frame id of UTM coordinates in this zone, e.g. ``utm_30U``."""
        return f"utm_{self.zone}"

    def to_text(self) -> str:
        """``"E0 N0 U0 zone"`` as stored in a bag's custom data ``vbl.utm_origin``."""
        return f"{self.easting!r} {self.northing!r} {self.up!r} {self.zone}"

    @classmethod
    def from_text(cls, text: str) -> UtmOrigin:
        """Inverse of :meth:`to_text` (raises ``ValueError`` on malformed text)."""
        easting, northing, up, zone = text.split()
        return cls(float(easting), float(northing), float(up), zone)

    def same_projection(self, other: UtmOrigin) -> bool:
        """Whether both origins lie in one UTM zone and hemisphere (their frames share their axes)."""
        return _parse_zone(self.zone, None) == _parse_zone(other.zone, None)

    def offset_to(self, other: UtmOrigin) -> np.ndarray:
        """``(3,)`` metres to add to a position in this origin's frame to express it in ``other``'s.

        Raises:
            FrameMismatchError: the origins lie in different UTM zones or hemispheres.
        """
        if not self.same_projection(other):
            raise FrameMismatchError(
                f"frames anchored in UTM zone {self.zone} and zone {other.zone} cannot be related by a "
                "translation; use drives recorded in one UTM zone"
            )
        return np.array(
            [self.easting - other.easting, self.northing - other.northing, self.up - other.up],
            dtype=np.float64,
        )

    def to_utm(self, positions: np.ndarray) -> np.ndarray:
        """``(N, 3)`` easting, northing, up of ``(N, 3)`` positions in this origin's frame."""
        return np.asarray(positions, dtype=np.float64) + np.array([self.easting, self.northing, self.up])

    def to_latlon(self, positions: np.ndarray) -> np.ndarray:
        """``(N, 2)`` WGS84 latitude, longitude (degrees) of ``(N, 3)`` positions in this frame."""
        utm = self.to_utm(np.atleast_2d(positions))
        lat, lon = utm_to_latlon(utm[:, 0], utm[:, 1], self.zone)
        return np.stack([np.asarray(lat, float), np.asarray(lon, float)], axis=1)


def change_frame(
    positions: np.ndarray, source: UtmOrigin | None, target: UtmOrigin | None, *, what: str
) -> np.ndarray:
    """``(N, 3)`` positions in ``source``'s frame expressed in ``target``'s frame.

    Args:
        positions: positions in the frame anchored at ``source``.
        source, target: the two origins; identical origins leave the positions as they are.
        what: names the data in error messages (e.g. the bag).

    Raises:
        FrameMismatchError: one origin is unknown, or the zones differ.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if source is None or target is None:
        missing = "its own" if source is None else "the target frame's"
        raise FrameMismatchError(
            f"{what}: {missing} UTM origin is unknown, so its positions cannot be brought into the other "
            "frame; convert the drive with 'vbl convert robotcar' (which records /map/utm_origin)"
        )
    if source == target:
        return positions
    try:
        return positions + source.offset_to(target)
    except FrameMismatchError as err:
        raise FrameMismatchError(f"{what}: {err}") from err
