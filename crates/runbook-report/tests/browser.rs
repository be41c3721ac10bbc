//! The HTML report in a real browser: Debian's headless chromium renders a
//! fixture's report to a PNG, and the pixels must show the Gantt chart.
//!
//! Without chromium the test prints a skip notice, unless
//! `CHROMIUM_REQUIRED=1` (CI sets it), where a missing browser is a failure.

use runbook_engine::read_journal;
use runbook_report::{build_report, render_html};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

fn rgb(hex: &str) -> [u8; 3] {
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex colour");
    [byte(1), byte(3), byte(5)]
}

/// A decoded screenshot, RGB.
struct Image {
    width: usize,
    height: usize,
    pixels: Vec<[u8; 3]>,
}

impl Image {
    fn decode(path: &Path) -> Image {
        let file = std::fs::File::open(path).expect("screenshot file");
        let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("png header");
        let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
        let info = reader.next_frame(&mut buf).expect("png frame");
        let channels = info.color_type.samples();
        let (width, height) = (info.width as usize, info.height as usize);
        let pixels = buf[..info.buffer_size()]
            .chunks(channels)
            .map(|px| match channels {
                1 | 2 => [px[0], px[0], px[0]],
                _ => [px[0], px[1], px[2]],
            })
            .collect();
        Image {
            width,
            height,
            pixels,
        }
    }

    fn at(&self, x: usize, y: usize) -> [u8; 3] {
        self.pixels[y * self.width + x]
    }

    fn count(&self, mut f: impl FnMut([u8; 3]) -> bool) -> usize {
        self.pixels.iter().filter(|&&p| f(p)).count()
    }

    /// Solid blocks of `color`: for each row, the longest run of that
    /// colour; a bar shows up as several consecutive rows with a long run
    /// starting at the same x. Returns `(x, y, width, rows)` of the widest.
    fn widest_block(
        &self,
        color: [u8; 3],
        min_rows: usize,
    ) -> Option<(usize, usize, usize, usize)> {
        let close = |p: [u8; 3]| p.iter().zip(color).all(|(a, b)| a.abs_diff(b) <= 6);
        let mut best: Option<(usize, usize, usize, usize)> = None;
        for y in 0..self.height {
            let mut x = 0;
            while x < self.width {
                if !close(self.at(x, y)) {
                    x += 1;
                    continue;
                }
                let start = x;
                while x < self.width && close(self.at(x, y)) {
                    x += 1;
                }
                let width = x - start;
                if width < 20 {
                    continue;
                }
                // How many rows below keep the same run (a filled rectangle)?
                let rows = (y..self.height)
                    .take_while(|&yy| (start..start + width).all(|xx| close(self.at(xx, yy))))
                    .count();
                if rows >= min_rows && best.is_none_or(|b| width > b.2) {
                    best = Some((start, y, width, rows));
                }
            }
        }
        best
    }
}

#[test]
fn html_report_chart_renders_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() {
        if std::env::var("CHROMIUM_REQUIRED").as_deref() == Ok("1") {
            panic!(
                "{CHROMIUM} is missing and CHROMIUM_REQUIRED=1 (install Debian's chromium package)"
            );
        }
        eprintln!(
            "SKIPPED: {CHROMIUM} is not installed (set CHROMIUM_REQUIRED=1 to make this a failure)"
        );
        return;
    }
    let journal = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo sets CARGO_MANIFEST_DIR when it runs a test"),
    )
    .join("tests/fixtures/failure.jsonl");
    let contents = read_journal(&journal).expect("fixture");
    let report = build_report("20261126-210000-d4e5f6", &contents, false);
    let dir = tempfile::tempdir().expect("temp dir");
    let html = dir.path().join("report.html");
    std::fs::write(&html, render_html(&report)).expect("write html");
    let png = dir.path().join("shot.png");
    let profile = dir.path().join("profile");
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
            "--window-size=1280,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish the screenshot within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = child
        .stderr
        .take()
        .map(|mut s| {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut text);
            text
        })
        .unwrap_or_default();
    assert!(
        status.success() && png.exists(),
        "chromium failed ({status}): {stderr}"
    );
    if let Ok(keep) = std::env::var("REPORT_SCREENSHOT") {
        std::fs::copy(&png, keep).expect("keep screenshot");
    }

    let image = Image::decode(&png);
    assert_eq!((image.width, image.height), (1280, 1000));
    let not_white = image.count(|p| p.iter().any(|&c| c < 235));
    assert!(
        not_white > image.pixels.len() / 50,
        "the page looks blank: {not_white} non-white pixels"
    );

    // `snapshot` succeeded for ~4.8 s of the 137 s run: a green bar about
    // 31 px wide and 16 px tall. Badges and legend swatches are smaller or
    // broken up by text, so only a chart bar is a solid block this size.
    let green = image
        .widest_block(rgb(runbook_report::html::COLOR_SUCCEEDED), 12)
        .expect("a succeeded bar in the chart");
    assert!(green.2 >= 25, "succeeded bar too narrow: {green:?}");
    // `approve-migrate` waited 120 s and was rejected: a failed bar most of
    // the chart wide, with the amber wait drawn over its middle.
    let red = image
        .widest_block(rgb(runbook_report::html::COLOR_FAILED), 3)
        .expect("a failed bar in the chart");
    assert!(red.2 >= 500, "failed bar too narrow: {red:?}");
    let amber = image
        .widest_block(rgb(runbook_report::html::COLOR_WAITING), 6)
        .expect("a gate-wait bar in the chart");
    assert!(amber.2 >= 500, "wait bar too narrow: {amber:?}");
    // Time runs left to right: the snapshot ran before the gate waited,
    // and the wait sits on the gate's row, inside its bar.
    assert!(
        green.0 < red.0,
        "green {green:?} should start left of red {red:?}"
    );
    assert!(
        green.1 < red.1,
        "snapshot's row is above the gate's: {green:?} {red:?}"
    );
    assert!(
        amber.1 > red.1 && amber.1 < red.1 + 16,
        "wait {amber:?} inside gate bar {red:?}"
    );
}
