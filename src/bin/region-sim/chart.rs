//! The time series as an SVG: three panels over the seconds of the run (ops/s, regions, p99
//! latency), each a polyline with its axis range written out. Plain SVG 1.1, no scripts, so
//! any browser or image viewer shows it.

use std::fmt::Write;

use crate::report::TimePoint;

const WIDTH: f64 = 720.0;
const PANEL: f64 = 160.0;
const MARGIN: f64 = 60.0;

/// A panel: its name, its unit, and the value it draws.
type Panel = (&'static str, &'static str, fn(&TimePoint) -> f64);

/// The SVG document for `points`.
pub fn svg(title: &str, points: &[TimePoint]) -> String {
    let panels: [Panel; 3] = [
        ("throughput", "ops/s", |p| p.ops as f64),
        ("regions", "regions", |p| p.regions as f64),
        ("p99 latency", "ms", |p| p.p99_us as f64 / 1000.0),
    ];
    let height = MARGIN + panels.len() as f64 * (PANEL + MARGIN);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">"#,
        w = WIDTH + 2.0 * MARGIN
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(out, r#"<text x="{MARGIN}" y="30" font-size="16">{}</text>"#, escape(title));
    let seconds = points.len().max(2) as f64 - 1.0;
    for (i, (name, unit, value)) in panels.iter().enumerate() {
        let top = MARGIN + i as f64 * (PANEL + MARGIN);
        let max = points.iter().map(value).fold(0.0, f64::max).max(1.0);
        let _ = writeln!(
            out,
            r##"<rect x="{MARGIN}" y="{top}" width="{WIDTH}" height="{PANEL}" fill="none" stroke="#999"/>"##
        );
        let _ = writeln!(out, r#"<text x="{MARGIN}" y="{}">{name} ({unit})</text>"#, top - 8.0);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            MARGIN - 6.0,
            top + 12.0,
            format_value(max)
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">0</text>"#,
            MARGIN - 6.0,
            top + PANEL
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{} s</text>"#,
            MARGIN + WIDTH,
            top + PANEL + 16.0,
            points.len()
        );
        let line: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(s, p)| {
                let x = MARGIN + WIDTH * s as f64 / seconds;
                let y = top + PANEL - PANEL * value(p) / max;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            out,
            r##"<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{}"/>"##,
            line.join(" ")
        );
    }
    out.push_str("</svg>\n");
    out
}

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_is_drawn_in_every_panel() {
        let points: Vec<TimePoint> = (0..5)
            .map(|s| TimePoint { second: s, ops: 100 * s, regions: 1 + s, p99_us: 900 })
            .collect();
        let doc = svg("run <1>", &points);
        assert!(doc.starts_with("<svg") && doc.ends_with("</svg>\n"));
        assert_eq!(doc.matches("<polyline").count(), 3);
        let first = doc.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(first.split(' ').count(), 5);
        assert!(doc.contains("run &lt;1&gt;"));
    }
}
