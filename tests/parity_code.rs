//! An independent, naive implementation of the parity code of format-spec.md §17.3, following
//! the text of `docs/rs-code-section.md` (field, Cantor basis, byte layout, layout rule,
//! points), checked byte for byte against the `reed-solomon-simd` crate the writer uses.
//!
//! Nothing here calls the crate to compute a recovery shard: the field is built from its
//! polynomial and the Cantor basis, the code is defined by polynomial interpolation at the
//! points of the spec, and decoding is Lagrange interpolation from any `k` shards. The crate
//! is only used as the thing under comparison.

use reed_solomon_simd::engine::DefaultEngine;
use reed_solomon_simd::rate::{HighRateEncoder, LowRateEncoder, RateEncoder};

/// Field polynomial x^16 + x^5 + x^3 + x^2 + 1.
const POLY: u32 = 0x1002D;

/// The Cantor basis β_0 … β_15, each in the polynomial basis (bit t = coefficient of x^t).
const CANTOR: [u16; 16] = [
    0x0001, 0xACCA, 0x3C0E, 0x163E, 0xC582, 0xED2E, 0x914C, 0x4012, 0x6C98, 0x10D8, 0x6A72, 0xB900,
    0xFDB8, 0xFB34, 0xFF38, 0x991E,
];

/// GF(2^16) in the polynomial basis, with the maps to and from Cantor coordinates.
struct Gf {
    /// exp[i] = x^i, for 0 ≤ i < 2·65535.
    exp: Vec<u16>,
    /// log[a] for a ≠ 0.
    log: Vec<u32>,
    /// Cantor coordinates → polynomial basis: omega[i] = ω_i.
    omega: Vec<u16>,
    /// Polynomial basis → Cantor coordinates.
    coords: Vec<u16>,
}

impl Gf {
    fn new() -> Gf {
        let mut exp = vec![0u16; 2 * 65535];
        let mut log = vec![u32::MAX; 65536];
        let mut a: u32 = 1;
        for i in 0..65535u32 {
            assert_eq!(log[a as usize], u32::MAX, "x is not primitive");
            exp[i as usize] = a as u16;
            exp[i as usize + 65535] = a as u16;
            log[a as usize] = i;
            a <<= 1;
            if a & 0x10000 != 0 {
                a ^= POLY;
            }
        }
        assert_eq!(a, 1);
        let mut omega = vec![0u16; 65536];
        let mut coords = vec![0u16; 65536];
        for (i, w) in omega.iter_mut().enumerate() {
            *w = CANTOR
                .iter()
                .enumerate()
                .filter(|(b, _)| (i >> b) & 1 == 1)
                .fold(0, |acc, (_, beta)| acc ^ beta);
        }
        let mut seen = vec![false; 65536];
        for (i, &w) in omega.iter().enumerate() {
            assert!(!seen[w as usize], "the Cantor basis is not a basis");
            seen[w as usize] = true;
            coords[w as usize] = i as u16;
        }
        Gf {
            exp,
            log,
            omega,
            coords,
        }
    }

    fn mul(&self, a: u16, b: u16) -> u16 {
        if a == 0 || b == 0 {
            0
        } else {
            self.exp[(self.log[a as usize] + self.log[b as usize]) as usize]
        }
    }

    fn inv(&self, a: u16) -> u16 {
        assert_ne!(a, 0);
        self.exp[((65535 - self.log[a as usize]) % 65535) as usize]
    }

    fn div(&self, a: u16, b: u16) -> u16 {
        self.mul(a, self.inv(b))
    }
}

/// The smallest power of two ≥ x.
fn pow2(x: usize) -> usize {
    x.next_power_of_two()
}

/// The code for k original and m recovery shards (spec: "The code").
#[derive(Clone, Copy, Debug)]
struct Code {
    k: usize,
    m: usize,
    /// Recovery-first layout ("high rate") or original-first layout ("low rate").
    high: bool,
    /// n = min(P(k), P(m)).
    n: usize,
}

impl Code {
    /// The selection rule of the spec.
    fn new(k: usize, m: usize) -> Code {
        Code::with_layout(k, m, pow2(k) >= pow2(m))
    }

    fn with_layout(k: usize, m: usize, high: bool) -> Code {
        let n = if high { pow2(m) } else { pow2(k) };
        Code { k, m, high, n }
    }

    /// Index (Cantor coordinates) of the point of original shard i.
    fn original_point(&self, i: usize) -> usize {
        if self.high {
            self.n + i
        } else {
            i
        }
    }

    /// Index of the point of recovery shard j.
    fn recovery_point(&self, j: usize) -> usize {
        if self.high {
            j
        } else {
            self.n + j
        }
    }

    /// Indices of the zero points: with the points of any k shards they make exactly D
    /// points, D the degree bound of the spec.
    fn zero_points(&self) -> std::ops::Range<usize> {
        if self.high {
            self.n + self.k..pow2(self.n + self.k)
        } else {
            self.k..self.n
        }
    }
}

/// Field elements (polynomial basis) of a shard, by the piece rule.
fn shard_to_elements(gf: &Gf, bytes: &[u8]) -> Vec<u16> {
    assert!(!bytes.is_empty() && bytes.len() % 2 == 0);
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for piece in bytes.chunks(64) {
        let (lo, hi) = piece.split_at(piece.len() / 2);
        for (&l, &h) in lo.iter().zip(hi) {
            let v = u16::from(l) | u16::from(h) << 8;
            out.push(gf.omega[v as usize]);
        }
    }
    out
}

/// The bytes of a shard from its field elements, by the piece rule.
fn elements_to_shard(gf: &Gf, elements: &[u16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(elements.len() * 2);
    for piece in elements.chunks(32) {
        let coords: Vec<u16> = piece.iter().map(|&e| gf.coords[e as usize]).collect();
        out.extend(coords.iter().map(|&v| v as u8));
        out.extend(coords.iter().map(|&v| (v >> 8) as u8));
    }
    out
}

/// For the distinct points `xs` and a point `x` not among them: the Lagrange coefficients
/// c_i with f(x) = Σ c_i·f(xs_i) for every polynomial f of degree < xs.len().
fn lagrange_at(gf: &Gf, xs: &[u16], x: u16) -> Vec<u16> {
    let ell = xs.iter().fold(1, |acc, &t| gf.mul(acc, x ^ t));
    xs.iter()
        .enumerate()
        .map(|(i, &xi)| {
            let denom = xs
                .iter()
                .enumerate()
                .filter(|&(t, _)| t != i)
                .fold(x ^ xi, |acc, (_, &xt)| gf.mul(acc, xi ^ xt));
            gf.div(ell, denom)
        })
        .collect()
}

/// Lagrange coefficients, computed once per point set, for many target points.
struct Interpolator<'a> {
    gf: &'a Gf,
    xs: Vec<u16>,
    /// 1 / Π_{t≠i} (xs_i − xs_t)
    weights: Vec<u16>,
}

impl<'a> Interpolator<'a> {
    fn new(gf: &'a Gf, xs: Vec<u16>) -> Interpolator<'a> {
        let weights = xs
            .iter()
            .enumerate()
            .map(|(i, &xi)| {
                let p = xs
                    .iter()
                    .enumerate()
                    .filter(|&(t, _)| t != i)
                    .fold(1, |acc, (_, &xt)| gf.mul(acc, xi ^ xt));
                gf.inv(p)
            })
            .collect();
        Interpolator { gf, xs, weights }
    }

    /// The coefficients of the first `used` points for the value at `x` (barycentric form).
    fn coefficients(&self, x: u16, used: usize) -> Vec<u16> {
        let gf = self.gf;
        let ell = self.xs.iter().fold(1, |acc, &t| gf.mul(acc, x ^ t));
        self.xs[..used]
            .iter()
            .zip(&self.weights)
            .map(|(&xi, &w)| gf.mul(ell, gf.div(w, x ^ xi)))
            .collect()
    }
}

/// Σ_i coefficient_i · shard_i, element by element.
fn combine(gf: &Gf, coefficients: &[u16], shards: &[Vec<u16>]) -> Vec<u16> {
    let mut out = vec![0u16; shards[0].len()];
    for (&c, shard) in coefficients.iter().zip(shards) {
        for (o, &e) in out.iter_mut().zip(shard) {
            *o ^= gf.mul(c, e);
        }
    }
    out
}

/// The recovery shards of `originals`, from the definition.
fn naive_encode(gf: &Gf, code: Code, originals: &[Vec<u8>]) -> Vec<Vec<u8>> {
    assert_eq!(originals.len(), code.k);
    let data: Vec<Vec<u16>> = originals.iter().map(|s| shard_to_elements(gf, s)).collect();
    // Known points: the originals first, then the zero points.
    let xs: Vec<u16> = (0..code.k)
        .map(|i| code.original_point(i))
        .chain(code.zero_points())
        .map(|p| gf.omega[p])
        .collect();
    let interp = Interpolator::new(gf, xs);
    (0..code.m)
        .map(|j| {
            let x = gf.omega[code.recovery_point(j)];
            let coefficients = interp.coefficients(x, code.k);
            elements_to_shard(gf, &combine(gf, &coefficients, &data))
        })
        .collect()
}

/// Rebuilds the missing originals from any k available shards (more are ignored): the
/// values at the known points plus the zero points determine the codeword polynomial.
fn naive_decode(
    gf: &Gf,
    code: Code,
    originals: &[(usize, Vec<u8>)],
    recovery: &[(usize, Vec<u8>)],
) -> Vec<(usize, Vec<u8>)> {
    let mut points = Vec::new();
    let mut values = Vec::new();
    for (i, s) in originals {
        points.push(code.original_point(*i));
        values.push(shard_to_elements(gf, s));
    }
    for (j, s) in recovery {
        points.push(code.recovery_point(*j));
        values.push(shard_to_elements(gf, s));
    }
    assert!(points.len() >= code.k, "fewer than k shards");
    points.truncate(code.k);
    values.truncate(code.k);
    let xs: Vec<u16> = points
        .iter()
        .copied()
        .chain(code.zero_points())
        .map(|p| gf.omega[p])
        .collect();
    let interp = Interpolator::new(gf, xs);
    let have: Vec<usize> = originals.iter().map(|(i, _)| *i).collect();
    (0..code.k)
        .filter(|i| !have.contains(i))
        .map(|i| {
            let x = gf.omega[code.original_point(i)];
            let coefficients = interp.coefficients(x, code.k);
            (
                i,
                elements_to_shard(gf, &combine(gf, &coefficients, &values)),
            )
        })
        .collect()
}

/// Deterministic test data: a small xorshift generator.
fn pseudo_random_shards(count: usize, bytes: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            (0..bytes)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 24) as u8
                })
                .collect()
        })
        .collect()
}

/// The pinned pattern of the spec: byte t of original shard i (of S bytes) is
/// ((g + 1) · 2654435761 mod 2^32) >> 24 with g = i·S + t.
fn pattern_shards(k: usize, bytes: usize) -> Vec<Vec<u8>> {
    let byte = |g: usize| ((((g as u64 + 1) * 2_654_435_761) % (1 << 32)) >> 24) as u8;
    (0..k)
        .map(|i| (0..bytes).map(|t| byte(i * bytes + t)).collect())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn blake3_of(shards: &[Vec<u8>]) -> String {
    let mut h = blake3::Hasher::new();
    for s in shards {
        h.update(s);
    }
    h.finalize().to_hex().to_string()
}

fn forced(high: bool, k: usize, m: usize, originals: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let bytes = originals[0].len();
    if high {
        let mut e = HighRateEncoder::new(k, m, bytes, DefaultEngine::new(), None).unwrap();
        for s in originals {
            e.add_original_shard(s).unwrap();
        }
        let r = e.encode().unwrap();
        r.recovery_iter().map(<[u8]>::to_vec).collect()
    } else {
        let mut e = LowRateEncoder::new(k, m, bytes, DefaultEngine::new(), None).unwrap();
        for s in originals {
            e.add_original_shard(s).unwrap();
        }
        let r = e.encode().unwrap();
        r.recovery_iter().map(<[u8]>::to_vec).collect()
    }
}

#[test]
fn field_and_basis() {
    let gf = Gf::new();
    // β_0 = 1 and β_t² + β_t = β_{t−1}: a Cantor basis.
    assert_eq!(CANTOR[0], 1);
    for t in 1..16 {
        let b = CANTOR[t];
        assert_eq!(gf.mul(b, b) ^ b, CANTOR[t - 1], "beta_{t}");
    }
    // The subspace polynomial s_l of V_l maps ω_i to ω_{i >> l}, and its linear coefficient
    // Π_{0 ≠ y ∈ V_l} y is 1.
    for l in 0..16usize {
        let prod = (1..1usize << l).fold(1, |acc, y| gf.mul(acc, gf.omega[y]));
        assert_eq!(prod, 1, "l = {l}");
    }
    for l in [1usize, 2, 5, 8] {
        for i in [0usize, 1, 3, 77, 300, 4095, 65535] {
            let s = (0..1usize << l).fold(1, |acc, a| gf.mul(acc, gf.omega[i] ^ gf.omega[a]));
            assert_eq!(s, gf.omega[i >> l], "l = {l}, i = {i}");
        }
    }
}

#[test]
fn matches_crate_for_both_layouts_and_the_selection_rule() {
    let gf = Gf::new();
    // (k, m, shard bytes): high rate with one and several chunks, low rate with one and
    // several chunks, equal powers of two either way, the writer's (200, 30) and (200, 2000),
    // and shard sizes that are not multiples of 64 (the short last piece).
    let cases = [
        (1, 1, 64),
        (2, 3, 64),
        (3, 2, 64),
        (3, 3, 128),
        (4, 2, 64),
        (5, 7, 64),
        (7, 5, 64),
        (5, 40, 64),
        (33, 2, 64),
        (2, 33, 128),
        (64, 13, 64),
        (200, 30, 128),
        (200, 2000, 64),
        (3, 2, 2),
        (5, 40, 66),
        (200, 30, 100),
        (7, 5, 190),
    ];
    for (seed, &(k, m, bytes)) in cases.iter().enumerate() {
        let originals = pseudo_random_shards(k, bytes, seed as u64 + 1);
        let want = reed_solomon_simd::encode(k, m, &originals).unwrap();
        let got = naive_encode(&gf, Code::new(k, m), &originals);
        assert!(got == want, "(k, m, bytes) = ({k}, {m}, {bytes})");
    }
    // Every small (k, m): catches any mistake in the selection rule at the boundaries.
    for k in 1..=34 {
        for m in 1..=34 {
            let originals = pseudo_random_shards(k, 64, (k * 100 + m) as u64);
            let want = reed_solomon_simd::encode(k, m, &originals).unwrap();
            assert!(
                naive_encode(&gf, Code::new(k, m), &originals) == want,
                "(k, m) = ({k}, {m})"
            );
        }
    }
}

#[test]
fn the_two_layouts_agree_exactly_when_the_powers_of_two_are_equal() {
    let gf = Gf::new();
    for &(k, m) in &[
        (3, 2),
        (2, 3),
        (3, 3),
        (5, 7),
        (7, 5),
        (4, 4),
        (5, 40),
        (40, 5),
        (17, 30),
        (200, 30),
    ] {
        let originals = pseudo_random_shards(k, 64, (k * 1000 + m) as u64);
        let high = forced(true, k, m, &originals);
        let low = forced(false, k, m, &originals);
        // Each crate encoder is the corresponding layout of the spec.
        assert!(high == naive_encode(&gf, Code::with_layout(k, m, true), &originals));
        assert!(low == naive_encode(&gf, Code::with_layout(k, m, false), &originals));
        assert_eq!(
            high == low,
            pow2(k) == pow2(m),
            "(k, m) = ({k}, {m}): the layouts agree iff P(k) = P(m)"
        );
    }
}

#[test]
fn closed_form_generator() {
    // The informative closed form of the spec: recovery_j = Σ_i g_ji·original_i with
    // g_ji = ω_{(n+i)>>l} / (ω_{n+i} + ω_j) (recovery-first) or
    // g_ji = ω_{(n+j)>>l} / (ω_{n+j} + ω_i) (original-first), n = 2^l.
    let gf = Gf::new();
    for &(k, m) in &[(4, 2), (200, 30), (5, 40), (7, 5), (3, 3), (1, 1)] {
        let code = Code::new(k, m);
        let l = code.n.trailing_zeros();
        let xs: Vec<u16> = (0..k)
            .map(|i| code.original_point(i))
            .chain(code.zero_points())
            .map(|p| gf.omega[p])
            .collect();
        for j in 0..m {
            let x = gf.omega[code.recovery_point(j)];
            let lagrange = lagrange_at(&gf, &xs, x);
            for (i, &c) in lagrange.iter().take(k).enumerate() {
                let g = if code.high {
                    let p = code.n + i;
                    gf.div(gf.omega[p >> l], gf.omega[p] ^ gf.omega[j])
                } else {
                    let p = code.n + j;
                    gf.div(gf.omega[p >> l], gf.omega[p] ^ gf.omega[i])
                };
                assert_eq!(c, g, "(k, m) = ({k}, {m}), j = {j}, i = {i}");
            }
            // The zero points have coefficients too, but they multiply zeros.
        }
    }
}

#[test]
fn pinned_vectors() {
    let gf = Gf::new();
    // k = 4, m = 2, 64-byte shards of the pattern.
    let originals = pattern_shards(4, 64);
    assert_eq!(
        hex(&originals[0]),
        "9e3cda7817b553f18f2ecc6a08a745e3811fbe5cfa9836d57311af4eec8a28c6\
         6503a13fde7c1ab856f59331cf6d0caa48e68523c15ffd9c3ad87615b351ef8d"
    );
    let recovery = naive_encode(&gf, Code::new(4, 2), &originals);
    assert_eq!(
        hex(&recovery[0]),
        "f241fc8282c3ac837376be30e1e7947aad06ae489d9449cadcab322121f0a1a4515312a549c634ae413ef5a7d01ad498db1093397841c838a44ac2aa03e710da"
    );
    assert_eq!(
        hex(&recovery[1]),
        "be093c4ac3ba8c9b737ab530e9e68c9a9546e5835ddc09f23cb3322a2af0a9a449726ae5820274e681c7d4bfd012d098d3108a584081007ce382029363ff10d2"
    );
    assert_eq!(
        recovery,
        reed_solomon_simd::encode(4, 2, &originals).unwrap()
    );
    // BLAKE3 of the concatenated recovery shards for larger cases, same pattern.
    for &(k, m, bytes, want) in &[
        (
            2,
            5,
            64,
            "83fdfc430cbbbc29474bac5d5e8a3950b3973572879334c61795e99fdbf772dc",
        ),
        (
            5,
            40,
            64,
            "b0dd98aefd50bf80160d384d6de2c9b8f9aa01fa6b5aeb11eed32e250241b1db",
        ),
        (
            200,
            30,
            4096,
            "37970c63f6e50c31a1faa1e64ecec3ab160b29c889adb1e90b9c731674b32d99",
        ),
    ] {
        let originals = pattern_shards(k, bytes);
        let recovery = naive_encode(&gf, Code::new(k, m), &originals);
        assert_eq!(
            blake3_of(&recovery),
            want,
            "(k, m, bytes) = ({k}, {m}, {bytes})"
        );
        assert_eq!(
            recovery,
            reed_solomon_simd::encode(k, m, &originals).unwrap()
        );
    }
}

#[test]
fn decodes_from_any_k_shards() {
    let gf = Gf::new();
    for &(k, m, bytes) in &[
        (4, 2, 64),
        (200, 30, 64),
        (5, 40, 64),
        (7, 5, 130),
        (3, 3, 64),
    ] {
        let code = Code::new(k, m);
        let originals = pseudo_random_shards(k, bytes, (k + 7 * m) as u64);
        let recovery = reed_solomon_simd::encode(k, m, &originals).unwrap();
        // Lose as many originals as there are recovery shards (or all of them), spread out;
        // keep exactly k shards: the remaining originals and the first recovery shards.
        let lose = m.min(k);
        let lost: Vec<usize> = (0..lose).map(|t| t * k / lose).collect();
        let kept: Vec<(usize, Vec<u8>)> = (0..k)
            .filter(|i| !lost.contains(i))
            .map(|i| (i, originals[i].clone()))
            .collect();
        // Use the last recovery shards, to exercise points other than the first.
        let rec: Vec<(usize, Vec<u8>)> = (m - lose..m).map(|j| (j, recovery[j].clone())).collect();
        let rebuilt = naive_decode(&gf, code, &kept, &rec);
        assert_eq!(rebuilt.len(), lose);
        for (i, shard) in &rebuilt {
            assert!(*shard == originals[*i], "(k, m) = ({k}, {m}), original {i}");
        }
        // The crate's decoder rebuilds the same from the same shards.
        let theirs = reed_solomon_simd::decode(
            k,
            m,
            kept.iter().map(|(i, s)| (*i, s)),
            rec.iter().map(|(j, s)| (*j, s)),
        )
        .unwrap();
        for (i, shard) in &rebuilt {
            assert_eq!(&theirs[i], shard);
        }
    }
}
