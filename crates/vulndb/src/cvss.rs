//! CVSS v3.0/v3.1 base score (CVSS v3.1 specification, §7.1 and Appendix A).

/// A CVSS v3.x vector and the base score computed from it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cvss3 {
    /// The vector as found in the advisory, e.g. `CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H`.
    pub vector: String,
    /// The base score, 0.0 to 10.0 with one decimal, computed per CVSS v3.1.
    pub base_score: f64,
}

impl Cvss3 {
    /// Parses a `CVSS:3.0/...` or `CVSS:3.1/...` vector and computes its base score.
    ///
    /// All eight base metrics (AV, AC, PR, UI, S, C, I, A) must be present exactly once
    /// with valid values; temporal and environmental metrics are allowed and ignored.
    /// Returns `None` for anything else (including CVSS v2 and v4 vectors).
    pub fn parse(vector: &str) -> Option<Cvss3> {
        let vector = vector.trim();
        let mut parts = vector.split('/');
        match parts.next()? {
            "CVSS:3.0" | "CVSS:3.1" => {}
            _ => return None,
        }
        let mut m: [Option<&str>; 8] = [None; 8];
        const NAMES: [&str; 8] = ["AV", "AC", "PR", "UI", "S", "C", "I", "A"];
        for part in parts {
            let (k, v) = part.split_once(':')?;
            if let Some(i) = NAMES.iter().position(|n| *n == k)
                && m[i].replace(v).is_some()
            {
                return None;
            }
        }
        let [av, ac, pr, ui, s, c, i, a] = m;
        let changed = match s? {
            "U" => false,
            "C" => true,
            _ => return None,
        };
        let av = match av? {
            "N" => 0.85,
            "A" => 0.62,
            "L" => 0.55,
            "P" => 0.2,
            _ => return None,
        };
        let ac = match ac? {
            "L" => 0.77,
            "H" => 0.44,
            _ => return None,
        };
        let pr = match (pr?, changed) {
            ("N", _) => 0.85,
            ("L", false) => 0.62,
            ("L", true) => 0.68,
            ("H", false) => 0.27,
            ("H", true) => 0.5,
            _ => return None,
        };
        let ui = match ui? {
            "N" => 0.85,
            "R" => 0.62,
            _ => return None,
        };
        let cia = |x: Option<&str>| match x? {
            "H" => Some(0.56),
            "L" => Some(0.22),
            "N" => Some(0.0),
            _ => None,
        };
        let (c, i, a) = (cia(c)?, cia(i)?, cia(a)?);
        let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
        let impact = if changed { 7.52 * (iss - 0.029) - 3.25 * f64::powi(iss - 0.02, 15) } else { 6.42 * iss };
        let exploitability = 8.22 * av * ac * pr * ui;
        let base_score = if impact <= 0.0 {
            0.0
        } else if changed {
            roundup(f64::min(1.08 * (impact + exploitability), 10.0))
        } else {
            roundup(f64::min(impact + exploitability, 10.0))
        };
        Some(Cvss3 { vector: vector.to_string(), base_score })
    }
}

/// The smallest number with one decimal that is >= `x` (CVSS v3.1 Appendix A,
/// computed on integers to avoid floating-point artefacts such as 4.000000001).
fn roundup(x: f64) -> f64 {
    let int_input = (x * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 { int_input as f64 / 100_000.0 } else { ((int_input / 10_000) + 1) as f64 / 10.0 }
}
