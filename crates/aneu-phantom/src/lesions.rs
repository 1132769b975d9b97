//! Aneurysms on the segment of each RSNA location, and the distractors
//! (bifurcation bulges, infundibula, loops and kinks) that every case gets,
//! positive or negative, from one distribution.

use aneu_io::Location;
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::anatomy::{Artery, Segment, Side, VesselTree};
use crate::shapes::{Primitive, V3, add, catmull_rom, cross, perpendicular, scale, unit};

/// The shape family of an aneurysm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AneurysmShape {
    /// A round dome on a neck.
    Saccular,
    /// A dome elongated along its axis.
    Elongated,
    /// A dome with one or two daughter blebs.
    Lobulated,
}

/// One aneurysm, in the head frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aneurysm {
    /// The RSNA location.
    pub location: Location,
    /// The parent artery it sits on.
    pub artery: Artery,
    /// Dome centre (mm, head frame).
    pub centre: V3,
    /// Dome radius (mm).
    pub radius_mm: f64,
    /// Neck radius (mm).
    pub neck_mm: f64,
    /// Shape family.
    pub shape: AneurysmShape,
    /// The solids: neck, dome and blebs.
    pub primitives: Vec<Primitive>,
}

/// Prevalence weights of the 13 locations (roughly those of the RSNA
/// training set: anterior communicating, MCA and supraclinoid ICA most
/// common).
const WEIGHTS: [f64; 13] = [
    0.05, 0.05, 0.09, 0.09, 0.10, 0.10, 0.15, 0.05, 0.05, 0.06, 0.06, 0.05, 0.10,
];

fn side_of(l: Location) -> Side {
    let n = l.name();
    if n.starts_with("Left") {
        Side::Left
    } else if n.starts_with("Right") {
        Side::Right
    } else {
        Side::Midline
    }
}

/// Picks the parent segment and the stretch along it for a location.
/// Returns (segment, t range, whether the dome may point along the vessel
/// as at a bifurcation apex).
fn site<'a>(tree: &'a VesselTree, l: Location, rng: &mut StdRng) -> Option<(&'a Segment, (f64, f64), bool)> {
    use Location::*;
    let s = side_of(l);
    let pick = |a: Artery, side: Side| tree.find(a, side);
    match l {
        LeftInfraclinoidIca | RightInfraclinoidIca => {
            pick(Artery::IcaInfraclinoid, s).map(|g| (g, (0.55, 0.95), false))
        }
        LeftSupraclinoidIca | RightSupraclinoidIca => pick(Artery::IcaSupraclinoid, s).map(|g| (g, (0.15, 0.95), true)),
        LeftMca | RightMca => {
            if rng.random_bool(0.8) {
                pick(Artery::MiddleCerebralM1, s).map(|g| (g, (0.85, 1.0), true))
            } else {
                pick(Artery::MiddleCerebralM1, s).map(|g| (g, (0.2, 0.7), false))
            }
        }
        AcomA => pick(Artery::AComm, Side::Midline).map(|g| (g, (0.3, 0.7), true)),
        LeftAca | RightAca => {
            if rng.random_bool(0.5) {
                pick(Artery::AnteriorCerebralA1, s).map(|g| (g, (0.3, 0.8), false))
            } else {
                pick(Artery::AnteriorCerebralA2, s).map(|g| (g, (0.05, 0.35), false))
            }
        }
        LeftPcomA | RightPcomA => pick(Artery::PComm, s).map(|g| (g, (0.0, 0.15), true)),
        BasilarTip => pick(Artery::Basilar, Side::Midline).map(|g| (g, (0.94, 1.0), true)),
        OtherPosterior => {
            let side = if rng.random_bool(0.5) { Side::Left } else { Side::Right };
            match rng.random_range(0..4) {
                0 => pick(Artery::PcaP1, side).map(|g| (g, (0.2, 0.9), false)),
                1 => pick(Artery::PcaP2, side).map(|g| (g, (0.05, 0.6), false)),
                2 => pick(Artery::SuperiorCerebellar, side).map(|g| (g, (0.05, 0.3), false)),
                _ => pick(Artery::Vertebral, side).map(|g| (g, (0.5, 0.9), false)),
            }
        }
    }
}

/// How the aneurysms' dome radii are drawn: from the clinical log-normal
/// (1–6 mm, median ≈ 2.3 mm; a third of the domes under 2 mm), or, for a
/// share of them, uniformly from a range of small radii. A training set
/// with more small aneurysms than the clinic has gives a network more
/// distinct examples of those it misses (docs/phantoms.md); an evaluation
/// set keeps the default, the clinical distribution alone.
///
/// ```
/// let d = aneu_phantom::DomeRadii::default();
/// assert_eq!((d.small_share, d.small_mm), (0.0, [1.0, 1.75]));
/// assert!(d.validate().is_ok());
/// assert!(aneu_phantom::DomeRadii { small_share: 0.5, small_mm: [2.0, 1.0] }.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomeRadii {
    /// The share of aneurysms (0–1) whose dome radius is drawn uniformly
    /// from [`DomeRadii::small_mm`]; the others follow the clinical
    /// distribution. With 0, the default, no extra random number is drawn,
    /// so a seed gives the same phantoms as before this option existed.
    pub small_share: f64,
    /// The range of those radii, mm (1–1.75 by default: domes 2–3.5 mm
    /// across, those the shipped model misses).
    pub small_mm: [f64; 2],
}

impl Default for DomeRadii {
    fn default() -> Self {
        Self {
            small_share: 0.0,
            small_mm: [1.0, 1.75],
        }
    }
}

impl DomeRadii {
    /// Checks the share (0–1) and the range (0 < min ≤ max ≤ 6 mm, the
    /// clinical distribution's bounds).
    ///
    /// # Errors
    /// A message naming the bad value.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(0.0..=1.0).contains(&self.small_share) {
            return Err(format!("small dome share {} is outside 0..=1", self.small_share));
        }
        let [lo, hi] = self.small_mm;
        if !(lo > 0.0 && lo <= hi && hi <= 6.0) {
            return Err(format!("small dome radii {lo}–{hi} mm: need 0 < min ≤ max ≤ 6"));
        }
        Ok(())
    }

    /// One dome radius (mm).
    fn draw(&self, rng: &mut StdRng) -> f64 {
        if self.small_share > 0.0 && rng.random_bool(self.small_share) {
            let [lo, hi] = self.small_mm;
            rng.random_range(lo..=hi)
        } else {
            dome_radius(rng)
        }
    }
}

/// A dome radius in 1–6 mm, log-normal with median ≈ 2.3 mm.
fn dome_radius(rng: &mut StdRng) -> f64 {
    // Box–Muller
    let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (2.3 * (0.42 * z).exp()).clamp(1.0, 6.0)
}

/// Picks a location by prevalence.
fn location(rng: &mut StdRng) -> Location {
    let total: f64 = WEIGHTS.iter().sum();
    let mut u = rng.random_range(0.0..total);
    for (l, w) in Location::ALL.iter().zip(WEIGHTS) {
        if u < w {
            return *l;
        }
        u -= w;
    }
    Location::OtherPosterior
}

/// Places one aneurysm at `loc` (or a random location), if its parent
/// segment exists in this tree, with a dome radius drawn as `radii` says.
pub fn aneurysm(tree: &VesselTree, loc: Option<Location>, radii: &DomeRadii, rng: &mut StdRng) -> Option<Aneurysm> {
    let location = loc.unwrap_or_else(|| location(rng));
    let (seg, (t0, t1), apex) = site(tree, location, rng)?;
    let (c, tangent, r_parent) = seg.at(rng.random_range(t0..=t1));
    let radius = radii.draw(rng);
    // outward direction: sidewall (perpendicular) or, at an apex, tilted
    // along the flow
    let p = perpendicular(tangent);
    let q = cross(tangent, p);
    let phi = rng.random_range(0.0..std::f64::consts::TAU);
    let side = unit(add(scale(p, phi.cos()), scale(q, phi.sin())));
    let tilt: f64 = if apex {
        rng.random_range(0.0..1.2)
    } else {
        rng.random_range(1.2..1.57)
    };
    let n = unit(add(scale(tangent, tilt.cos()), scale(side, tilt.sin())));
    let neck = (radius * rng.random_range(0.45..0.75)).max(0.6);
    let centre = add(c, scale(n, r_parent * 0.8 + radius * rng.random_range(0.6..0.85)));
    let mut primitives = vec![Primitive::Capsule {
        a: add(c, scale(n, r_parent * 0.3)),
        b: centre,
        ra: neck,
        rb: neck,
    }];
    let u: f64 = rng.random();
    let shape = if u < 0.6 {
        primitives.push(Primitive::Capsule {
            a: centre,
            b: centre,
            ra: radius,
            rb: radius,
        });
        AneurysmShape::Saccular
    } else if u < 0.85 {
        let e = rng.random_range(1.3..1.8);
        let v = perpendicular(n);
        primitives.push(Primitive::Ellipsoid {
            c: centre,
            u: n,
            v,
            w: cross(n, v),
            r: [radius * e, radius / e.sqrt(), radius / e.sqrt()],
        });
        AneurysmShape::Elongated
    } else {
        primitives.push(Primitive::Capsule {
            a: centre,
            b: centre,
            ra: radius,
            rb: radius,
        });
        for _ in 0..rng.random_range(1..=2) {
            let d = unit(add(
                n,
                [
                    rng.random_range(-0.9..0.9),
                    rng.random_range(-0.9..0.9),
                    rng.random_range(-0.9..0.9),
                ],
            ));
            let rb = radius * rng.random_range(0.3..0.5);
            let bc = add(centre, scale(d, radius * 0.9));
            primitives.push(Primitive::Capsule {
                a: bc,
                b: bc,
                ra: rb,
                rb,
            });
        }
        AneurysmShape::Lobulated
    };
    Some(Aneurysm {
        location,
        artery: seg.artery,
        centre,
        radius_mm: radius,
        neck_mm: neck,
        shape,
        primitives,
    })
}

/// The kinds of distractor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DistractorKind {
    /// A smooth widening at a bifurcation.
    BifurcationBulge,
    /// A funnel-shaped widening, under 1.5 mm across, at a branch origin.
    Infundibulum,
    /// A small branch with a tight loop.
    Loop,
    /// A sharp kink in a small branch.
    Kink,
}

/// A non-aneurysmal look-alike.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distractor {
    /// The kind.
    pub kind: DistractorKind,
    /// Where (mm, head frame).
    pub centre: V3,
    /// The solids.
    pub primitives: Vec<Primitive>,
}

/// Two to five distractors, drawn the same way for every case.
pub fn distractors(tree: &VesselTree, rng: &mut StdRng) -> Vec<Distractor> {
    let small: Vec<&Segment> = tree
        .segments
        .iter()
        .filter(|s| {
            matches!(
                s.artery,
                Artery::Distal | Artery::PComm | Artery::SuperiorCerebellar | Artery::MiddleCerebralM2
            )
        })
        .collect();
    let carriers: Vec<&Segment> = tree
        .segments
        .iter()
        .filter(|s| {
            matches!(
                s.artery,
                Artery::MiddleCerebralM2 | Artery::AnteriorCerebralA2 | Artery::PcaP2
            )
        })
        .collect();
    let n = rng.random_range(2..=5);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let kind = match rng.random_range(0..4) {
            0 => DistractorKind::BifurcationBulge,
            1 => DistractorKind::Infundibulum,
            2 => DistractorKind::Loop,
            _ => DistractorKind::Kink,
        };
        match kind {
            DistractorKind::BifurcationBulge if !tree.bifurcations.is_empty() => {
                let (c, r) = tree.bifurcations[rng.random_range(0..tree.bifurcations.len())];
                let rb = r * rng.random_range(1.1..1.35);
                out.push(Distractor {
                    kind,
                    centre: c,
                    primitives: vec![Primitive::Capsule { a: c, b: c, ra: rb, rb }],
                });
            }
            DistractorKind::Infundibulum if !small.is_empty() => {
                let s = small[rng.random_range(0..small.len())];
                let (o, t, r) = s.at(0.0);
                let len = rng.random_range(1.0..2.0);
                out.push(Distractor {
                    kind,
                    centre: o,
                    primitives: vec![Primitive::Capsule {
                        a: o,
                        b: add(o, scale(t, len)),
                        ra: rng.random_range(0.5..0.74),
                        rb: r,
                    }],
                });
            }
            DistractorKind::Loop | DistractorKind::Kink if !carriers.is_empty() => {
                let s = carriers[rng.random_range(0..carriers.len())];
                let (o, t, _) = s.at(rng.random_range(0.3..0.9));
                let p = perpendicular(t);
                let q = cross(t, p);
                let r0 = rng.random_range(0.55..0.8);
                let pts: Vec<V3> = if kind == DistractorKind::Loop {
                    let rl = rng.random_range(2.0..3.2);
                    let c = add(o, scale(p, 6.0));
                    let mut v = vec![o, add(o, scale(p, 3.0))];
                    for k in 0..=8 {
                        let a = k as f64 / 8.0 * std::f64::consts::TAU * 0.95;
                        v.push(add(c, add(scale(p, -rl * a.cos()), scale(q, rl * a.sin()))));
                    }
                    v.push(add(c, scale(p, 6.0)));
                    v
                } else {
                    let a = add(o, scale(p, 5.0));
                    let b = add(a, scale(unit(add(scale(p, -0.6), q)), 5.0));
                    vec![o, a, b, add(b, scale(q, 6.0))]
                };
                let centre = pts[pts.len() / 2];
                out.push(Distractor {
                    kind,
                    centre,
                    primitives: crate::shapes::tube(&catmull_rom(&pts, 0.4), r0, r0 * 0.85),
                });
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn radii_are_skewed_small() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut r: Vec<f64> = (0..4001).map(|_| dome_radius(&mut rng)).collect();
        r.sort_by(f64::total_cmp);
        let median = r[2000];
        assert!((2.0..2.6).contains(&median), "{median}");
        assert!(r[0] >= 1.0 && r[4000] <= 6.0);
    }

    #[test]
    fn a_small_share_draws_small_domes() {
        let radii = DomeRadii {
            small_share: 0.5,
            small_mm: [1.0, 1.5],
        };
        let mut rng = StdRng::seed_from_u64(3);
        let r: Vec<f64> = (0..4000).map(|_| radii.draw(&mut rng)).collect();
        // the clinical distribution alone puts P(r ≤ 1.5) ≈ 0.16
        let small = r.iter().filter(|v| **v <= 1.5).count() as f64 / r.len() as f64;
        let expected = 0.5 + 0.5 * 0.16;
        assert!((small - expected).abs() < 0.04, "{small}");
        assert!(r.iter().all(|v| (1.0..=6.0).contains(v)));
        // share 0 draws exactly what the clinical distribution draws
        let (mut a, mut b) = (StdRng::seed_from_u64(4), StdRng::seed_from_u64(4));
        for _ in 0..100 {
            assert_eq!(DomeRadii::default().draw(&mut a), dome_radius(&mut b));
        }
    }

    #[test]
    fn every_location_can_be_placed() {
        let mut rng = StdRng::seed_from_u64(2);
        let tree = crate::anatomy::circle_of_willis(&mut rng);
        for l in Location::ALL {
            let placed = (0..20)
                .any(|_| aneurysm(&tree, Some(l), &DomeRadii::default(), &mut rng).is_some_and(|a| a.location == l));
            assert!(placed || tree.variants.iter().any(|v| v.contains("absent")), "{l}");
        }
    }
}
