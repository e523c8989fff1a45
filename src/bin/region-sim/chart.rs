//! The time series as a chart (plotters): three panels over the run's time, each with ticks,
//! a grid and a legend: reads and writes per second, regions, write p50 and p99 and read p99
//! latency. SVG, or PNG when the file name ends in `.png`. Text is drawn with an embedded font (Noto Sans), so
//! the chart looks the same on a machine without fonts.

use std::{path::Path, sync::Once};

use plotters::{coord::Shift, prelude::*};

use crate::report::TimePoint;

const SIZE: (u32, u32) = (960, 840);
const FONT: &str = "sans-serif";

/// One line of a panel: its legend, its colour, and the value it draws.
type Line = (&'static str, RGBColor, fn(&TimePoint) -> f64);

/// A panel: its caption, the unit of its y axis, its lines, and whether they are samples
/// taken at the end of each bucket (drawn there, from the run's start value) rather than
/// numbers over the whole bucket (drawn at its middle).
struct Panel {
    caption: &'static str,
    unit: &'static str,
    lines: &'static [Line],
    sampled: bool,
}

const BLUE: RGBColor = RGBColor(31, 111, 235);
const ORANGE: RGBColor = RGBColor(230, 120, 20);
const GREEN: RGBColor = RGBColor(30, 150, 70);

const PANELS: [Panel; 3] = [
    Panel {
        caption: "throughput",
        unit: "ops/s",
        lines: &[
            ("reads", BLUE, |p| p.reads_per_s),
            ("writes", ORANGE, |p| p.writes_per_s),
            ("failed reads", GREEN, |p| p.read_failures_per_s),
        ],
        sampled: false,
    },
    Panel {
        caption: "regions",
        unit: "regions",
        lines: &[("regions", GREEN, |p| p.regions as f64)],
        sampled: true,
    },
    Panel {
        caption: "latency",
        unit: "ms",
        lines: &[
            ("write p50", BLUE, |p| p.write_p50_us as f64 / 1000.0),
            ("write p99", ORANGE, |p| p.write_p99_us as f64 / 1000.0),
            ("read p99", GREEN, |p| p.read_p99_us as f64 / 1000.0),
        ],
        sampled: false,
    },
];

/// What the chart draws: the whole buckets of a run, `bucket_s` wide, and the regions at
/// its start.
pub struct Series<'a> {
    pub points: &'a [TimePoint],
    pub bucket_s: f64,
    pub initial_regions: u64,
}

impl Series<'_> {
    /// The points of one line of `panel`.
    fn line(&self, panel: &Panel, value: fn(&TimePoint) -> f64) -> Vec<(f64, f64)> {
        let w = self.bucket_s;
        if !panel.sampled {
            return self.points.iter().map(|p| (p.t_s + w / 2.0, value(p))).collect();
        }
        let start = (0.0, self.initial_regions as f64);
        std::iter::once(start).chain(self.points.iter().map(|p| (p.t_s + w, value(p)))).collect()
    }
}

/// Draws `series` into `path`, titled `title`.
pub fn draw(path: &Path, title: &str, series: &Series) -> Result<(), String> {
    register_font()?;
    let png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let err =
        |e: &dyn std::fmt::Display| format!("cannot draw the chart into {}: {e}", path.display());
    if png {
        plot(&BitMapBackend::new(path, SIZE).into_drawing_area(), title, series)
            .map_err(|e| err(&e))
    } else {
        plot(&SVGBackend::new(path, SIZE).into_drawing_area(), title, series).map_err(|e| err(&e))
    }
}

fn register_font() -> Result<(), String> {
    static ONCE: Once = Once::new();
    let mut res = Ok(());
    ONCE.call_once(|| {
        res = plotters::style::register_font(FONT, FontStyle::Normal, notosans::REGULAR_TTF)
            .map_err(|_| "the embedded font does not load".to_string());
    });
    res
}

fn plot<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    series: &Series,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let body = root.titled(title, (FONT, 22))?;
    let w = series.bucket_s;
    let end = series.points.last().map_or(1.0, |p| p.t_s + w).max(w);
    for (area, panel) in body.split_evenly((PANELS.len(), 1)).iter().zip(&PANELS) {
        let lines: Vec<_> = panel.lines.iter().map(|l| (l, series.line(panel, l.2))).collect();
        let top = lines.iter().flat_map(|(_, ps)| ps.iter().map(|p| p.1)).fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(panel.caption, (FONT, 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..end, 0.0..(top * 1.1).max(1.0))?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc(panel.unit)
            .x_label_formatter(&|x| format!("{x:.1}"))
            .y_label_formatter(&|y| format_value(*y))
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()?;
        for (&(name, colour, _), points) in lines {
            chart.draw_series(LineSeries::new(points, colour.stroke_width(2)))?.label(name).legend(
                move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)),
            );
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()
}

fn format_value(v: f64) -> String {
    match v {
        v if v >= 10_000.0 => format!("{:.0}k", v / 1000.0),
        v if v >= 100.0 || v == v.trunc() => format!("{v:.0}"),
        v => format!("{v:.1}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[TimePoint]) -> Series<'_> {
        Series { points, bucket_s: 0.1, initial_regions: 1 }
    }

    fn points() -> Vec<TimePoint> {
        (0..20)
            .map(|i| TimePoint {
                t_s: i as f64 * 0.1,
                reads_per_s: 1000.0 + 10.0 * i as f64,
                writes_per_s: 900.0,
                read_failures_per_s: 0.0,
                regions: 1 + i / 2,
                write_p50_us: 700,
                write_p99_us: 3000 + 100 * i,
                read_p99_us: 40,
            })
            .collect()
    }

    #[test]
    fn an_svg_chart_has_every_line_and_its_legend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        draw(&path, "run <1>", &series(&points())).unwrap();
        let doc = std::fs::read_to_string(&path).unwrap();
        assert!(doc.starts_with("<svg"), "{doc}");
        assert!(doc.matches("<polyline").count() >= 6, "six lines: {doc}");
        let labels =
            ["reads", "writes", "regions", "write p50", "read p99", "time (s)", "&lt;1&gt;"];
        for label in labels {
            assert!(doc.contains(label), "{label} missing");
        }
    }

    #[test]
    fn a_png_chart_is_a_png_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.PNG");
        draw(&path, "run", &series(&points())).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000);
    }

    #[test]
    fn an_empty_series_still_draws() {
        let dir = tempfile::tempdir().unwrap();
        draw(&dir.path().join("c.svg"), "empty", &series(&[])).unwrap();
    }

    #[test]
    fn regions_are_drawn_at_bucket_ends_from_the_start_value() {
        let points = points();
        let s = series(&points);
        let line = s.line(&PANELS[1], PANELS[1].lines[0].2);
        assert_eq!(line.len(), points.len() + 1);
        assert_eq!(line[0], (0.0, 1.0));
        assert!((line[1].0 - 0.1).abs() < 1e-9 && (line[20].0 - 2.0).abs() < 1e-9);
        let rates = s.line(&PANELS[0], PANELS[0].lines[0].2);
        assert!((rates[0].0 - 0.05).abs() < 1e-9, "a rate is drawn mid-bucket");
    }

    #[test]
    fn values_read_short() {
        assert_eq!(format_value(25_000.0), "25k");
        assert_eq!(format_value(250.0), "250");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(2.5), "2.5");
    }
}
