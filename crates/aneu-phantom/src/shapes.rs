//! Small 3D vector helpers and the implicit primitives that vessels,
//! aneurysms and distractors are made of.

use serde::{Deserialize, Serialize};

/// A point or vector in mm.
pub type V3 = [f64; 3];

pub(crate) fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
pub(crate) fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
pub(crate) fn scale(a: V3, s: f64) -> V3 {
    [a[0] * s, a[1] * s, a[2] * s]
}
pub(crate) fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
pub(crate) fn cross(a: V3, b: V3) -> V3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
pub(crate) fn norm(a: V3) -> f64 {
    dot(a, a).sqrt()
}
pub(crate) fn unit(a: V3) -> V3 {
    let n = norm(a);
    if n > 0.0 { scale(a, 1.0 / n) } else { [0.0, 0.0, 1.0] }
}

/// Any unit vector perpendicular to `d`.
pub(crate) fn perpendicular(d: V3) -> V3 {
    let d = unit(d);
    let helper = if d[0].abs() < 0.9 {
        [1.0, 0.0, 0.0]
    } else {
        [0.0, 1.0, 0.0]
    };
    unit(cross(d, helper))
}

/// A centripetal-free (uniform) Catmull–Rom curve through `ctrl`, sampled
/// every `step` mm (approximately). The curve passes through every control
/// point, so anatomical landmarks stay where they are put.
pub(crate) fn catmull_rom(ctrl: &[V3], step: f64) -> Vec<V3> {
    if ctrl.len() < 2 {
        return ctrl.to_vec();
    }
    let mut out = vec![ctrl[0]];
    for i in 0..ctrl.len() - 1 {
        let p0 = if i == 0 {
            sub(scale(ctrl[0], 2.0), ctrl[1])
        } else {
            ctrl[i - 1]
        };
        let (p1, p2) = (ctrl[i], ctrl[i + 1]);
        let p3 = if i + 2 < ctrl.len() {
            ctrl[i + 2]
        } else {
            sub(scale(p2, 2.0), p1)
        };
        let n = ((norm(sub(p2, p1)) / step).ceil() as usize).max(1);
        for s in 1..=n {
            let t = s as f64 / n as f64;
            let (t2, t3) = (t * t, t * t * t);
            let mut p = [0.0; 3];
            for a in 0..3 {
                p[a] = 0.5
                    * (2.0 * p1[a]
                        + (-p0[a] + p2[a]) * t
                        + (2.0 * p0[a] - 5.0 * p1[a] + 4.0 * p2[a] - p3[a]) * t2
                        + (-p0[a] + 3.0 * p1[a] - 3.0 * p2[a] + p3[a]) * t3);
            }
            out.push(p);
        }
    }
    out
}

/// An implicit solid with an (approximate) signed distance in mm.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Primitive {
    /// A cone-capped tube from `a` (radius `ra`) to `b` (radius `rb`);
    /// `a == b` makes a sphere.
    Capsule {
        /// One end.
        a: V3,
        /// Other end.
        b: V3,
        /// Radius at `a`.
        ra: f64,
        /// Radius at `b`.
        rb: f64,
    },
    /// An ellipsoid with orthonormal axes `u`, `v`, `w` and semi-axes `r`.
    Ellipsoid {
        /// Centre.
        c: V3,
        /// First axis (unit).
        u: V3,
        /// Second axis (unit).
        v: V3,
        /// Third axis (unit).
        w: V3,
        /// Semi-axes along u, v, w.
        r: V3,
    },
}

impl Primitive {
    /// Signed distance (negative inside), exact for capsules and a
    /// conservative approximation for ellipsoids.
    pub fn distance(&self, p: V3) -> f64 {
        match *self {
            Primitive::Capsule { a, b, ra, rb } => {
                let ab = sub(b, a);
                let l2 = dot(ab, ab);
                let t = if l2 > 0.0 {
                    (dot(sub(p, a), ab) / l2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                norm(sub(p, add(a, scale(ab, t)))) - (ra + (rb - ra) * t)
            }
            Primitive::Ellipsoid { c, u, v, w, r } => {
                let d = sub(p, c);
                let q = [dot(d, u) / r[0], dot(d, v) / r[1], dot(d, w) / r[2]];
                (norm(q) - 1.0) * r[0].min(r[1]).min(r[2])
            }
        }
    }

    /// Axis-aligned bounds (mm), grown by `margin`.
    pub fn bounds(&self, margin: f64) -> (V3, V3) {
        match *self {
            Primitive::Capsule { a, b, ra, rb } => {
                let r = ra.max(rb) + margin;
                let lo = [a[0].min(b[0]) - r, a[1].min(b[1]) - r, a[2].min(b[2]) - r];
                let hi = [a[0].max(b[0]) + r, a[1].max(b[1]) + r, a[2].max(b[2]) + r];
                (lo, hi)
            }
            Primitive::Ellipsoid { c, r, .. } => {
                let m = r[0].max(r[1]).max(r[2]) + margin;
                (sub(c, [m; 3]), add(c, [m; 3]))
            }
        }
    }

    /// Maps the primitive through a rigid-plus-scale transform.
    pub(crate) fn transformed(&self, f: &impl Fn(V3) -> V3, dir: &impl Fn(V3) -> V3, s: f64) -> Self {
        match *self {
            Primitive::Capsule { a, b, ra, rb } => Primitive::Capsule {
                a: f(a),
                b: f(b),
                ra: ra * s,
                rb: rb * s,
            },
            Primitive::Ellipsoid { c, u, v, w, r } => Primitive::Ellipsoid {
                c: f(c),
                u: dir(u),
                v: dir(v),
                w: dir(w),
                r: scale(r, s),
            },
        }
    }
}

/// Turns a list of centreline points with radii into capsules.
pub(crate) fn tube(points: &[V3], r0: f64, r1: f64) -> Vec<Primitive> {
    let n = points.len().saturating_sub(1).max(1) as f64;
    points
        .windows(2)
        .enumerate()
        .map(|(i, w)| Primitive::Capsule {
            a: w[0],
            b: w[1],
            ra: r0 + (r1 - r0) * i as f64 / n,
            rb: r0 + (r1 - r0) * (i + 1) as f64 / n,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capsule_distance() {
        let c = Primitive::Capsule {
            a: [0.0; 3],
            b: [10.0, 0.0, 0.0],
            ra: 1.0,
            rb: 1.0,
        };
        assert!((c.distance([5.0, 3.0, 0.0]) - 2.0).abs() < 1e-12);
        assert!((c.distance([-2.0, 0.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!(c.distance([5.0, 0.0, 0.0]) < 0.0);
    }

    #[test]
    fn spline_passes_through_control_points() {
        let ctrl = [[0.0, 0.0, 0.0], [10.0, 5.0, 0.0], [20.0, 0.0, 3.0]];
        let s = catmull_rom(&ctrl, 0.5);
        for c in ctrl {
            assert!(s.iter().any(|p| norm(sub(*p, c)) < 1e-9));
        }
        assert!(s.windows(2).all(|w| norm(sub(w[1], w[0])) < 1.0));
    }
}
