//! The SVG charts a benchmark writes beside its tables ([`Chart`]): rates by payload size, one
//! line per system on a log scale ([`RatesChart`]), and distributions of durations as
//! cumulative step plots ([`DurationsChart`]); where they go ([`PlotArgs`]) and the Markdown
//! line that shows one ([`emit`]). The benchmarks turn their results into these; nothing here
//! knows what was measured.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use plotters::coord::combinators::LogCoord;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::Samples;

/// Height of every chart, in pixels.
const HEIGHT: u32 = 450;
/// Width of a chart's plot (axes and their labels), in pixels; the legend is beside it.
const PLOT_WIDTH: u32 = 580;
/// The font of every text; the viewer picks the face.
const FONT: &str = "sans-serif";
/// Font sizes as plotters takes them: its SVG backend writes 1/1.24 of the size given, so
/// these come out as 19, 13 and 14 px.
const TITLE_SIZE: u32 = 24;
/// Tick labels, the legend and the note.
const TEXT_SIZE: u32 = 16;
/// The axes' titles.
const DESC_SIZE: u32 = 17;
/// One legend row, in pixels.
const LEGEND_ROW: i32 = 22;
/// Roughly how wide a character of a legend entry is, in pixels, for sizing the legend.
/// Generous: a legend a little too wide loses some white space, one too narrow cuts names off.
const CHAR_WIDTH: f64 = 8.0;
/// The longest legend entry, in characters; longer ones are cut.
const LEGEND_CHARS: usize = 48;

/// Colours by slot: Okabe and Ito's colour-blind-safe palette (yellow left out: it does not
/// show on white), then grey. Each slot also has its own marker shape ([`Marker::of`]).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0x00, 0x00, 0x00), // black
    RGBColor(0x88, 0x88, 0x88), // grey
];
/// The target line's colour.
const TARGET: RGBColor = RGBColor(0xB0, 0x00, 0x20);
/// Grid lines.
const GRID: RGBColor = RGBColor(0xDD, 0xDD, 0xDD);
/// The subtitle's colour.
const NOTE: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// Where a benchmark writes its charts; flattened into each benchmark's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct PlotArgs {
    /// Directory the SVG charts are written to (created if missing), relative to the working
    /// directory; the scripts run from the repository's root. Each chart's Markdown image line
    /// is printed under its table.
    #[arg(long, value_name = "DIR", default_value = "bench/plots")]
    pub plots: PathBuf,
    /// Write no charts.
    #[arg(long)]
    pub no_plots: bool,
}

impl PlotArgs {
    /// The directory to write to; `None` with `--no-plots`.
    pub fn dir(&self) -> Option<&Path> {
        (!self.no_plots).then_some(self.plots.as_path())
    }
}

/// A chart that renders itself as an SVG document.
pub trait Chart {
    /// Its title, also the image's alt text.
    fn title(&self) -> &str;
    /// The whole SVG document.
    fn svg(&self) -> anyhow::Result<String>;
}

/// A chart written to a file: printed as its Markdown image line, `![title](path)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The alt text: the chart's title.
    pub alt: String,
    /// Where the file is, as the directory was given.
    pub path: PathBuf,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alt = self.alt.replace(['[', ']'], "");
        write!(f, "![{alt}]({})", self.path.display())
    }
}

/// Renders `chart` and writes it to `dir/name.svg`, creating `dir`.
pub fn write(dir: &Path, name: &str, chart: &dyn Chart) -> anyhow::Result<Link> {
    let svg = chart.svg()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}.svg"));
    std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Link {
        alt: chart.title().to_string(),
        path,
    })
}

/// [`write`](fn@write), as the line a report prints under the chart's table: the image line, or why the
/// chart is missing (also said on stderr). A chart that cannot be written never costs the run
/// its tables.
pub fn emit(dir: &Path, name: &str, chart: &dyn Chart) -> String {
    match write(dir, name, chart) {
        Ok(link) => {
            eprintln!("chart: {}", link.path.display());
            link.to_string()
        }
        Err(e) => {
            eprintln!("chart {name}: not written: {e:#}");
            format!("Chart `{name}` not written: {e:#}.")
        }
    }
}

/// A median with the lowest and highest value around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The lowest value.
    pub low: f64,
    /// The highest value.
    pub high: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let s = Samples::of(values);
        (!s.values.is_empty()).then(|| Self {
            median: s.median(),
            low: s.min(),
            high: s.max(),
        })
    }
}

/// One system's rates in a [`RatesChart`].
#[derive(Debug, Clone)]
pub struct RateSeries {
    /// Its legend entry.
    pub name: String,
    /// Its colour and marker, so that a system looks the same in every chart of a run: 0 blue
    /// circle, 1 vermillion triangle, 2 bluish green square, 3 orange cross, 4 reddish purple
    /// circle, 5 sky blue triangle, 6 black square, 7 grey cross (then again from 0).
    pub slot: usize,
    /// One per category of the chart, `None` where it has no figure (failed, not run).
    pub at: Vec<Option<Spread>>,
}

/// Rates by category (payload sizes): a point at each median joined by a line, a whisker
/// from the lowest to the highest value, one series per system, a log-scale y axis. Series
/// are set slightly apart within a category so that close ones stay visible.
#[derive(Debug, Clone)]
pub struct RatesChart {
    /// The title.
    pub title: String,
    /// A grey line under the title (how many rounds, what the whiskers are); may be empty.
    pub note: String,
    /// The x axis's title.
    pub x_label: String,
    /// The y axis's title, with its unit.
    pub y_label: String,
    /// The x axis's categories, in order.
    pub categories: Vec<String>,
    /// The systems.
    pub series: Vec<RateSeries>,
}

/// One distribution in a [`DurationsChart`].
#[derive(Debug, Clone)]
pub struct DurationSeries {
    /// Its legend entry.
    pub name: String,
    /// Its colour and marker, as in [`RateSeries::slot`].
    pub slot: usize,
    /// Every trial's value in ms, in any order.
    pub ms: Vec<f64>,
}

/// Durations as empirical cumulative distributions: for each series a step that climbs by
/// one trial's share at each trial's value, with a marker there, so that the median, the
/// tail and every single trial can be read off; optionally a vertical target line.
#[derive(Debug, Clone)]
pub struct DurationsChart {
    /// The title.
    pub title: String,
    /// A grey line under the title; may be empty.
    pub note: String,
    /// The x axis's title, with its unit (ms).
    pub x_label: String,
    /// The distributions.
    pub series: Vec<DurationSeries>,
    /// A vertical line at this many ms, with its legend entry.
    pub target: Option<(String, f64)>,
}

/// A marker shape; each palette slot has one, so series differ in shape as well as colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Circle,
    Triangle,
    Square,
    Cross,
}

impl Marker {
    fn of(slot: usize) -> Self {
        [Self::Circle, Self::Triangle, Self::Square, Self::Cross][slot % 4]
    }

    /// Draws itself at pixel `at` of `area` (from the area's top left corner).
    fn draw<DB: DrawingBackend>(
        self,
        area: &DrawingArea<DB, Shift>,
        at: (i32, i32),
        colour: RGBColor,
    ) -> anyhow::Result<()> {
        let filled = colour.filled();
        let r = 4;
        let drawn = match self {
            Self::Circle => area.draw(&Circle::new(at, r, filled)),
            Self::Triangle => area.draw(&TriangleMarker::new(at, r + 1, filled)),
            Self::Square => area.draw(&Rectangle::new(
                [(at.0 - r, at.1 - r), (at.0 + r, at.1 + r)],
                filled,
            )),
            Self::Cross => area.draw(&Cross::new(at, r, colour.stroke_width(2))),
        };
        drawn.map_err(|e| anyhow::anyhow!("cannot draw a marker: {e}"))
    }
}

fn colour(slot: usize) -> RGBColor {
    PALETTE[slot % PALETTE.len()]
}

/// A legend entry: a name, its colour and marker, a line or not.
struct Entry<'a> {
    name: &'a str,
    colour: RGBColor,
    marker: Option<Marker>,
    dashed: bool,
}

/// The canvas every chart draws on: the title and note across the top, the plot on the left
/// and the legend on the right, sized to the longest legend entry.
struct Canvas<'a> {
    plot: DrawingArea<SVGBackend<'a>, Shift>,
    legend: DrawingArea<SVGBackend<'a>, Shift>,
}

/// The legend's width for these entries: room for the longest, up to [`LEGEND_CHARS`].
fn legend_width(names: &[&str]) -> u32 {
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let longest = longest.min(LEGEND_CHARS);
    (longest as f64 * CHAR_WIDTH + 48.0).max(120.0) as u32
}

/// `name` as the legend prints it: cut with `…` past [`LEGEND_CHARS`] characters.
fn legend_name(name: &str) -> String {
    match name.char_indices().nth(LEGEND_CHARS - 1) {
        Some((cut, _)) if name.chars().count() > LEGEND_CHARS => format!("{}…", &name[..cut]),
        _ => name.to_string(),
    }
}

fn canvas<'a>(
    svg: &'a mut String,
    title: &str,
    note: &str,
    names: &[&str],
) -> anyhow::Result<Canvas<'a>> {
    let legend = legend_width(names);
    let root = SVGBackend::with_string(svg, (PLOT_WIDTH + legend, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    let mut body = root
        .titled(title, (FONT, TITLE_SIZE).into_font().style(FontStyle::Bold))
        .map_err(drawing)?;
    if !note.is_empty() {
        body = body
            .titled(note, (FONT, TEXT_SIZE).into_font().color(&NOTE))
            .map_err(drawing)?;
    }
    let (plot, legend) = body.split_horizontally(PLOT_WIDTH);
    Ok(Canvas { plot, legend })
}

/// The legend, top-aligned with the plot's top at `top` pixels.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    top: i32,
    entries: &[Entry<'_>],
) -> anyhow::Result<()> {
    let text =
        TextStyle::from((FONT, TEXT_SIZE).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, e) in entries.iter().enumerate() {
        let y = top + 8 + i as i32 * LEGEND_ROW;
        let line = vec![(4, y), (30, y)];
        let style = e.colour.stroke_width(2);
        let drawn = if e.dashed {
            area.draw(&DashedPathElement::new(line, 4, 3, style))
        } else {
            area.draw(&PathElement::new(line, style))
        };
        drawn.map_err(drawing)?;
        if let Some(marker) = e.marker {
            marker.draw(area, (17, y), e.colour)?;
        }
        (area.draw_text(&legend_name(e.name), &text, (38, y))).map_err(drawing)?;
    }
    Ok(())
}

/// An axis whose ticks (`bold`, labelled) and light grid lines are given: categories sit at
/// whole numbers, a log axis ticks at 1, 2 and 5. (plotters' own `WithKeyPoints` does this too
/// but loses the label formatter of an `f64` axis.)
struct Ticked<R> {
    inner: R,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl<R: Ranged<ValueType = f64>> Ticked<R> {
    fn new(inner: R, bold: Vec<f64>, light: Vec<f64>) -> Self {
        Self { inner, bold, light }
    }
}

impl<R: Ranged<ValueType = f64>> Ranged for Ticked<R> {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// A pixel of the whole image as a pixel of `area`.
fn relative<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, at: (i32, i32)) -> (i32, i32) {
    let (x0, y0) = area.get_base_pixel();
    (at.0 - x0, at.1 - y0)
}

fn drawing(e: impl fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the chart: {e}")
}

/// Compact number for a log axis: `500`, `2k`, `10k`, `1.5M`.
fn compact(v: f64) -> String {
    let (scaled, unit) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let digits = if (scaled - scaled.round()).abs() < 1e-9 {
        0
    } else {
        1
    };
    format!("{scaled:.digits$}{unit}")
}

/// Tick values of a log axis over `lo..hi`: 1, 2 and 5 times each power of ten (only the
/// powers of ten across more than four decades), and the light grid lines, every integer
/// multiple of each power of ten.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let first = lo.log10().floor() as i32;
    let last = hi.log10().ceil() as i32;
    let steps: &[f64] = if last - first > 4 {
        &[1.0]
    } else {
        &[1.0, 2.0, 5.0]
    };
    let (mut bold, mut light) = (Vec::new(), Vec::new());
    for e in first..=last {
        let decade = 10f64.powi(e);
        for m in 1..10 {
            let v = decade * f64::from(m);
            if v < lo || v > hi {
                continue;
            }
            light.push(v);
            if steps.contains(&f64::from(m)) {
                bold.push(v);
            }
        }
    }
    (bold, light)
}

impl Chart for RatesChart {
    fn title(&self) -> &str {
        &self.title
    }

    fn svg(&self) -> anyhow::Result<String> {
        let spreads = self.series.iter().flat_map(|s| s.at.iter().flatten());
        let (lo, hi) = spreads.fold((f64::INFINITY, 0f64), |(lo, hi), s| {
            (lo.min(s.low), hi.max(s.high))
        });
        if !(lo.is_finite() && lo > 0.0) {
            bail!("nothing to plot in {:?}", self.title);
        }
        if let Some(bad) = self
            .series
            .iter()
            .find(|s| s.at.len() != self.categories.len())
        {
            bail!(
                "{:?} has {} values for {} categories",
                bad.name,
                bad.at.len(),
                self.categories.len()
            );
        }
        // Room above and below, in log terms, so no marker sits on the frame.
        let (lo, hi) = (lo / 1.5, hi * 1.5);
        let (bold, light) = log_ticks(lo, hi);
        let n = self.categories.len();
        let x_ticks: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let x = Ticked::new(
            RangedCoordf64::from(-0.5..n as f64 - 0.5),
            x_ticks,
            Vec::new(),
        );
        let y = Ticked::new(LogCoord::from((lo..hi).log_scale()), bold, light);

        let mut svg = String::new();
        {
            let names: Vec<&str> = self.series.iter().map(|s| s.name.as_str()).collect();
            let canvas = canvas(&mut svg, &self.title, &self.note, &names)?;
            let mut chart = ChartBuilder::on(&canvas.plot)
                .margin(12)
                .x_label_area_size(48)
                .y_label_area_size(72)
                .build_cartesian_2d(x, y)
                .map_err(drawing)?;
            let category = |v: &f64| {
                let i = v.round();
                match self.categories.get(i as usize) {
                    Some(label) if (v - i).abs() < 1e-6 && i >= 0.0 => label.clone(),
                    _ => String::new(),
                }
            };
            chart
                .configure_mesh()
                .disable_x_mesh()
                .bold_line_style(GRID.stroke_width(1))
                .light_line_style(GRID.mix(0.4).stroke_width(1))
                .x_desc(self.x_label.as_str())
                .y_desc(self.y_label.as_str())
                .x_label_formatter(&category)
                .y_label_formatter(&|v| compact(*v))
                .label_style((FONT, TEXT_SIZE))
                .axis_desc_style((FONT, DESC_SIZE))
                .draw()
                .map_err(drawing)?;

            let m = self.series.len() as f64;
            let gap = (0.5 / m).min(0.06);
            for (k, s) in self.series.iter().enumerate() {
                let dx = (k as f64 - (m - 1.0) / 2.0) * gap;
                let c = colour(s.slot);
                let points: Vec<Option<(f64, Spread)>> = (s.at.iter().enumerate())
                    .map(|(i, at)| at.map(|sp| (i as f64 + dx, sp)))
                    .collect();
                // The line, broken where a size has no figure.
                for run in points.split(Option::is_none) {
                    let run: Vec<(f64, f64)> = run
                        .iter()
                        .flatten()
                        .map(|(x, sp)| (*x, sp.median))
                        .collect();
                    if run.len() > 1 {
                        chart
                            .draw_series(LineSeries::new(run, c.stroke_width(2)))
                            .map_err(drawing)?;
                    }
                }
                for (x, sp) in points.iter().flatten() {
                    if sp.high > sp.low {
                        let whisker =
                            PathElement::new(vec![(*x, sp.low), (*x, sp.high)], c.stroke_width(1));
                        chart.draw_series([whisker]).map_err(drawing)?;
                    }
                    let at = relative(&canvas.plot, chart.backend_coord(&(*x, sp.median)));
                    Marker::of(s.slot).draw(&canvas.plot, at, c)?;
                }
            }
            let top =
                chart.plotting_area().get_pixel_range().1.start - canvas.legend.get_base_pixel().1;
            let entries: Vec<Entry<'_>> = (self.series.iter())
                .map(|s| Entry {
                    name: &s.name,
                    colour: colour(s.slot),
                    marker: Some(Marker::of(s.slot)),
                    dashed: false,
                })
                .collect();
            legend(&canvas.legend, top, &entries)?;
            canvas.plot.present().map_err(drawing)?;
        }
        Ok(svg)
    }
}

/// Points of a chart: `(x, y)` in its coordinates.
type Points = Vec<(f64, f64)>;

/// The steps of one empirical distribution, and its markers: `(value, share of trials at or
/// below it in %)` for every trial, sorted.
fn steps(ms: &[f64]) -> (Points, Points) {
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let (mut line, mut marks) = (Vec::new(), Vec::new());
    for (i, &v) in sorted.iter().enumerate() {
        let below = i as f64 / n * 100.0;
        let at = (i + 1) as f64 / n * 100.0;
        line.push((v, below));
        line.push((v, at));
        marks.push((v, at));
    }
    (line, marks)
}

impl Chart for DurationsChart {
    fn title(&self) -> &str {
        &self.title
    }

    fn svg(&self) -> anyhow::Result<String> {
        let values = self.series.iter().flat_map(|s| s.ms.iter().copied());
        let most = values.clone().fold(f64::NEG_INFINITY, f64::max);
        if !most.is_finite() {
            bail!("nothing to plot in {:?}", self.title);
        }
        if let Some(bad) = values.clone().find(|v| !v.is_finite() || *v < 0.0) {
            bail!("{:?}: {bad} is not a duration", self.title);
        }
        let most = self.target.as_ref().map_or(most, |(_, t)| most.max(*t));
        let hi = (most * 1.08).max(1.0);
        let y = Ticked::new(
            // A little room below 0 % and above 100 %, so markers there clear the frame.
            RangedCoordf64::from(-2.0..103.0),
            vec![0.0, 25.0, 50.0, 75.0, 100.0],
            (0..=10).map(|i| f64::from(i) * 10.0).collect(),
        );

        let mut svg = String::new();
        {
            let mut names: Vec<&str> = self.series.iter().map(|s| s.name.as_str()).collect();
            if let Some((name, _)) = &self.target {
                names.push(name);
            }
            let canvas = canvas(&mut svg, &self.title, &self.note, &names)?;
            let mut chart = ChartBuilder::on(&canvas.plot)
                .margin(12)
                .x_label_area_size(48)
                .y_label_area_size(72)
                .build_cartesian_2d(0.0..hi, y)
                .map_err(drawing)?;
            chart
                .configure_mesh()
                .bold_line_style(GRID.stroke_width(1))
                .light_line_style(GRID.mix(0.4).stroke_width(1))
                .x_max_light_lines(2)
                .x_labels(8)
                .x_desc(self.x_label.as_str())
                .y_desc("trials at or below (%)")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.0}"))
                .label_style((FONT, TEXT_SIZE))
                .axis_desc_style((FONT, DESC_SIZE))
                .draw()
                .map_err(drawing)?;
            if let Some((_, t)) = &self.target {
                chart
                    .draw_series(DashedLineSeries::new(
                        [(*t, 0.0), (*t, 100.0)],
                        6,
                        4,
                        TARGET.stroke_width(2),
                    ))
                    .map_err(drawing)?;
            }
            for s in &self.series {
                let c = colour(s.slot);
                let (line, marks) = steps(&s.ms);
                chart
                    .draw_series(LineSeries::new(line, c.stroke_width(2)))
                    .map_err(drawing)?;
                for m in marks {
                    let at = relative(&canvas.plot, chart.backend_coord(&m));
                    Marker::of(s.slot).draw(&canvas.plot, at, c)?;
                }
            }
            let top =
                chart.plotting_area().get_pixel_range().1.start - canvas.legend.get_base_pixel().1;
            let mut entries: Vec<Entry<'_>> = (self.series.iter())
                .map(|s| Entry {
                    name: &s.name,
                    colour: colour(s.slot),
                    marker: Some(Marker::of(s.slot)),
                    dashed: false,
                })
                .collect();
            if let Some((name, _)) = &self.target {
                entries.push(Entry {
                    name,
                    colour: TARGET,
                    marker: None,
                    dashed: true,
                });
            }
            legend(&canvas.legend, top, &entries)?;
            canvas.plot.present().map_err(drawing)?;
        }
        Ok(svg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed chart: its size and every text in it with where it is drawn.
    struct Parsed {
        width: f64,
        height: f64,
        texts: Vec<Text>,
        circles: usize,
    }

    struct Text {
        text: String,
        x: f64,
        y: f64,
        size: f64,
        anchor: String,
        rotated: bool,
    }

    fn parse(svg: &str) -> Parsed {
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        let doc = roxmltree::Document::parse(svg).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        let num = |n: roxmltree::Node, a: &str| -> f64 {
            n.attribute(a)
                .unwrap_or_else(|| panic!("<{}> without {a}", n.tag_name().name()))
                .parse()
                .unwrap()
        };
        let texts = (root.descendants())
            .filter(|n| n.has_tag_name("text"))
            .map(|n| Text {
                text: n.text().unwrap_or_default().trim().to_string(),
                x: num(n, "x"),
                y: num(n, "y"),
                size: num(n, "font-size"),
                anchor: n.attribute("text-anchor").unwrap_or("start").to_string(),
                rotated: n
                    .attribute("transform")
                    .is_some_and(|t| t.contains("rotate")),
            })
            .collect();
        let circles = root
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count();
        Parsed {
            width: num(root, "width"),
            height: num(root, "height"),
            texts,
            circles,
        }
    }

    impl Parsed {
        fn has(&self, text: &str) -> bool {
            self.texts.iter().any(|t| t.text == text)
        }

        /// Every text, at about 0.6 em a character, lies inside the image.
        fn assert_nothing_clipped(&self) {
            for t in &self.texts {
                let long = t.text.chars().count() as f64 * t.size * 0.6;
                let (along, across, room) = if t.rotated {
                    (t.y, t.x, self.height)
                } else {
                    (t.x, t.y, self.width)
                };
                let (start, end) = match t.anchor.as_str() {
                    "middle" => (along - long / 2.0, along + long / 2.0),
                    "end" => (along - long, along),
                    _ => (along, along + long),
                };
                assert!(
                    start >= 0.0 && end <= room,
                    "{:?} runs from {start:.0} to {end:.0} of {room}",
                    t.text
                );
                let other = if t.rotated { self.width } else { self.height };
                assert!((0.0..=other).contains(&across), "{:?} at {across}", t.text);
            }
        }
    }

    fn spread(m: f64) -> Option<Spread> {
        Some(Spread {
            median: m,
            low: m * 0.8,
            high: m * 1.1,
        })
    }

    fn rates() -> RatesChart {
        let series = |name: &str, slot, at: [Option<Spread>; 3]| RateSeries {
            name: name.into(),
            slot,
            at: at.to_vec(),
        };
        RatesChart {
            title: "bench-channels: throughput, 1 → 1".into(),
            note: "median of 5 round(s), whiskers from the slowest to the fastest".into(),
            x_label: "payload size".into(),
            y_label: "messages delivered per second (log scale)".into(),
            categories: vec!["16 B".into(), "256 B".into(), "4 KiB".into()],
            series: vec![
                series(
                    "circuit tuned",
                    0,
                    [spread(2.4e6), spread(2e6), spread(235e3)],
                ),
                series("NATS async-nats", 3, [spread(1.4e6), None, spread(147e3)]),
                series(
                    "a contender with a long name",
                    1,
                    [spread(9e5), spread(6e5), None],
                ),
            ],
        }
    }

    fn durations() -> DurationsChart {
        let ms = |base: f64| {
            (0..20)
                .map(|i| base + f64::from(i * 7 % 20) * 50.0)
                .collect()
        };
        DurationsChart {
            title: "bench-replicated: failover after kill -9 of the leader".into(),
            note: String::new(),
            x_label: "ms from the kill to a send acknowledged again".into(),
            series: vec![
                DurationSeries {
                    name: "circuit R3 memory, first sender (20 trials)".into(),
                    slot: 0,
                    ms: ms(650.0),
                },
                DurationSeries {
                    name: "JetStream R3 memory, every sender (20 trials)".into(),
                    slot: 1,
                    ms: ms(4000.0),
                },
            ],
            target: Some(("target: circuit p99 ≤ 2000 ms".into(), 2000.0)),
        }
    }

    #[test]
    fn a_rates_chart_shows_its_titles_sizes_and_every_system() {
        let chart = rates();
        let svg = parse(&chart.svg().unwrap());
        assert_eq!(svg.height, f64::from(HEIGHT));
        for text in [
            "bench-channels: throughput, 1 → 1",
            "median of 5 round(s), whiskers from the slowest to the fastest",
            "payload size",
            "messages delivered per second (log scale)",
            "16 B",
            "256 B",
            "4 KiB",
            "circuit tuned",
            "NATS async-nats",
            "a contender with a long name",
        ] {
            assert!(svg.has(text), "no {text:?}");
        }
        // The y axis in compact units, ticks at 1, 2 and 5.
        assert!(svg.has("1M") && svg.has("200k"));
        // Circles are circuit tuned's marker (slot 0): one per size it has, one in the legend.
        assert_eq!(svg.circles, 3 + 1);
    }

    #[test]
    fn a_size_without_a_figure_has_no_marker() {
        let mut chart = rates();
        chart.series[0].at[1] = None;
        assert_eq!(parse(&chart.svg().unwrap()).circles, 2 + 1);
    }

    #[test]
    fn a_durations_chart_shows_every_trial_and_the_target() {
        let chart = durations();
        let svg = parse(&chart.svg().unwrap());
        for text in [
            "bench-replicated: failover after kill -9 of the leader",
            "ms from the kill to a send acknowledged again",
            "trials at or below (%)",
            "circuit R3 memory, first sender (20 trials)",
            "JetStream R3 memory, every sender (20 trials)",
            "target: circuit p99 ≤ 2000 ms",
            "50",
            "100",
        ] {
            assert!(svg.has(text), "no {text:?}");
        }
        // circuit's (slot 0): a circle per trial, one in the legend.
        assert_eq!(svg.circles, 20 + 1);
    }

    #[test]
    fn no_text_falls_outside_the_image() {
        parse(&rates().svg().unwrap()).assert_nothing_clipped();
        parse(&durations().svg().unwrap()).assert_nothing_clipped();
        let mut long = durations();
        long.series[1].name = "a legend entry far longer than any that a benchmark gives".into();
        let svg = parse(&long.svg().unwrap());
        svg.assert_nothing_clipped();
        assert!(svg.has("a legend entry far longer than any that a bench…"));
    }

    #[test]
    fn a_chart_with_nothing_to_show_is_an_error() {
        let mut chart = rates();
        for s in &mut chart.series {
            s.at = vec![None; 3];
        }
        assert!(chart
            .svg()
            .unwrap_err()
            .to_string()
            .contains("nothing to plot"));
        let mut chart = rates();
        chart.series[2].at.pop();
        let e = chart.svg().unwrap_err().to_string();
        assert!(e.contains("2 values for 3 categories"), "{e}");
        let mut chart = durations();
        chart.series.clear();
        assert!(chart.svg().is_err());
        let mut chart = durations();
        chart.series[0].ms[3] = f64::NAN;
        assert!(chart
            .svg()
            .unwrap_err()
            .to_string()
            .contains("not a duration"));
    }

    #[test]
    fn log_ticks_are_1_2_5_and_labels_compact() {
        let (bold, light) = log_ticks(40e3, 3.6e6);
        assert_eq!(
            bold,
            [50e3, 100e3, 200e3, 500e3, 1e6, 2e6],
            "within the range only"
        );
        assert_eq!(light.len(), 6 + 9 + 3);
        let (bold, _) = log_ticks(5.0, 5e6);
        assert_eq!(
            bold,
            [10.0, 100.0, 1e3, 1e4, 1e5, 1e6],
            "decades only over six"
        );
        assert_eq!(
            [500.0, 2e3, 50e3, 1e6, 1.5e6].map(compact),
            ["500", "2k", "50k", "1M", "1.5M"]
        );
    }

    #[test]
    fn steps_climb_one_trial_at_a_time() {
        let (line, marks) = steps(&[300.0, 100.0, 200.0, 100.0]);
        assert_eq!(
            marks,
            [(100.0, 25.0), (100.0, 50.0), (200.0, 75.0), (300.0, 100.0)]
        );
        assert_eq!(line.first(), Some(&(100.0, 0.0)));
        assert_eq!(line.last(), Some(&(300.0, 100.0)));
        assert_eq!(
            Spread::of([3.0, 1.0, 2.0]),
            Some(Spread {
                median: 2.0,
                low: 1.0,
                high: 3.0
            })
        );
        assert_eq!(Spread::of([]), None);
    }

    #[test]
    fn a_written_chart_is_linked_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let plots = dir.path().join("plots");
        let link = write(&plots, "channels-1-1", &rates()).unwrap();
        assert_eq!(link.path, plots.join("channels-1-1.svg"));
        let svg = std::fs::read_to_string(&link.path).unwrap();
        assert!(parse(&svg).has("circuit tuned"));
        assert_eq!(
            link.to_string(),
            format!(
                "![bench-channels: throughput, 1 → 1]({})",
                link.path.display()
            )
        );
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let line = emit(&file, "c", &rates());
        assert!(
            line.starts_with("Chart `c` not written: cannot create"),
            "{line}"
        );
        let mut empty = rates();
        empty.series.clear();
        let line = emit(&plots, "empty", &empty);
        assert!(
            line.starts_with("Chart `empty` not written: nothing to plot"),
            "{line}"
        );
        assert!(!plots.join("empty.svg").exists());
    }

    #[test]
    fn no_plots_means_no_directory() {
        let mut args = PlotArgs {
            plots: "bench/plots".into(),
            no_plots: false,
        };
        assert_eq!(args.dir(), Some(Path::new("bench/plots")));
        args.no_plots = true;
        assert_eq!(args.dir(), None);
    }
}
