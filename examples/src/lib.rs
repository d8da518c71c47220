//! Shared helpers of the example binaries: device choice, progress bars, the per-epoch
//! state file, the metrics history and its plot, and one-line errors.

use flax::data::{load_mnist, ImageClassification, Split};
use flax::tch::Device;
use flax::training::metrics::ComputedMetrics;
use flax::tree;
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The DejaVu font of Debian's `fonts-dejavu-core`, for the plots' text; without it the
/// plots are drawn without text.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// CUDA when asked for and present, else the CPU (with a note when CUDA was asked for).
pub fn device(cuda: bool) -> Device {
    if !cuda {
        return Device::Cpu;
    }
    let device = Device::cuda_if_available();
    if device == Device::Cpu {
        eprintln!("note: --cuda given but no CUDA device is available; running on the CPU");
    }
    device
}

/// The train and test splits of the MNIST-format data set in `dir`, on `device`; their first
/// 2,048 and 512 examples when `quick`. A missing or malformed data set is an error that says
/// what to do.
///
/// # Errors
/// [`flax::Error::Value`] with the loader's message and a hint.
pub fn mnist_datasets(
    dir: &Path,
    quick: bool,
    device: Device,
) -> flax::Result<(ImageClassification, ImageClassification)> {
    let load = |split| {
        load_mnist(dir, split).map_err(|e| {
            flax::Error::Value(format!(
                "{e}. Pass --data DIR with an MNIST-format data set, or install Debian's dataset-fashion-mnist"
            ))
        })
    };
    let (mut train, mut test) = (load(Split::Train)?, load(Split::Test)?);
    if quick {
        (train, test) = (train.take(2048)?, test.take(512)?);
    }
    Ok((tree::to_device(&train, device)?, tree::to_device(&test, device)?))
}

/// The metric `name` of a computed collection, as a number.
///
/// # Errors
/// [`flax::Error::Value`] when there is no such metric; libtorch's.
pub fn computed_value(computed: &ComputedMetrics, name: &str) -> flax::Result<f64> {
    let value = computed.get(name).ok_or_else(|| flax::Error::Value(format!("no metric named {name}")))?;
    Ok(value.f_double_value(&[])?)
}

/// A progress bar over `len` steps with the step rate and the time left; hidden when stderr
/// is not a terminal (as in the test suite).
pub fn progress_bar(len: u64, message: String) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta})",
    )
    .expect("the template is valid");
    ProgressBar::new(len).with_style(style).with_message(message)
}

/// Runs `main`'s body and turns an error into one line on stderr and exit code 1.
pub fn exit_on_error<E: Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The per-epoch train and test metrics of the spec's `metrics_history`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct History {
    pub train_loss: Vec<f64>,
    pub train_accuracy: Vec<f64>,
    pub test_loss: Vec<f64>,
    pub test_accuracy: Vec<f64>,
}

impl History {
    const HEADER: &'static str = "epoch,train_loss,train_accuracy,test_loss,test_accuracy";

    /// The number of epochs recorded.
    pub fn epochs(&self) -> usize {
        self.train_loss.len()
    }

    /// Appends one epoch's metrics.
    pub fn push(&mut self, train: (f64, f64), test: (f64, f64)) {
        self.train_loss.push(train.0);
        self.train_accuracy.push(train.1);
        self.test_loss.push(test.0);
        self.test_accuracy.push(test.1);
    }

    /// Keeps the first `epochs` epochs (a resumed run restarts after its last saved state).
    pub fn truncate(&mut self, epochs: usize) {
        for series in
            [&mut self.train_loss, &mut self.train_accuracy, &mut self.test_loss, &mut self.test_accuracy]
        {
            series.truncate(epochs);
        }
    }

    /// Writes the history as CSV, one line per epoch.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, path: &Path) -> flax::Result<()> {
        let mut text = format!("{}\n", Self::HEADER);
        for i in 0..self.epochs() {
            text += &format!(
                "{},{},{},{},{}\n",
                i + 1,
                self.train_loss[i],
                self.train_accuracy[i],
                self.test_loss[i],
                self.test_accuracy[i]
            );
        }
        std::fs::write(path, text).map_err(|e| flax::Error::io(path, e))
    }

    /// Reads a history written by [`History::save`]; empty when there is no file.
    ///
    /// # Errors
    /// I/O errors, or a file that is not such a history.
    pub fn load(path: &Path) -> flax::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(flax::Error::io(path, e)),
        };
        let malformed = || flax::Error::Format { format: "history CSV", message: path.display().to_string() };
        let mut history = Self::default();
        for line in text.lines().skip(1) {
            let values: Vec<f64> =
                line.split(',').skip(1).map(str::parse).collect::<Result<_, _>>().map_err(|_| malformed())?;
            let [train_loss, train_accuracy, test_loss, test_accuracy] = values[..] else {
                return Err(malformed());
            };
            history.push((train_loss, train_accuracy), (test_loss, test_accuracy));
        }
        Ok(history)
    }
}

/// Draws the loss and accuracy curves (train and test, per epoch) side by side into a PNG,
/// as the spec's matplotlib figure does; with titles, axis labels and a legend when the
/// DejaVu font is installed.
///
/// # Errors
/// A message when the image cannot be drawn or written.
pub fn plot_history(path: &Path, history: &History) -> Result<(), String> {
    let mut curves = Curves::new(&["epoch", "train_loss", "test_loss", "train_accuracy", "test_accuracy"]);
    for i in 0..history.epochs() {
        let row = [
            history.train_loss[i],
            history.test_loss[i],
            history.train_accuracy[i],
            history.test_accuracy[i],
        ];
        curves.push(&[&[(i + 1) as f64], &row[..]].concat()).map_err(|e| e.to_string())?;
    }
    plot_curves(
        path,
        &curves,
        &[("Loss", &["train_loss", "test_loss"]), ("Accuracy", &["train_accuracy", "test_accuracy"])],
    )
}

/// A table of numbers logged during training, one row per log line, its first column the
/// x axis (a step or an epoch): what an example plots and what `--resume` reads back.
#[derive(Debug, Clone, PartialEq)]
pub struct Curves {
    columns: Vec<String>,
    rows: Vec<Vec<f64>>,
}

impl Curves {
    /// An empty table with these column names, the x axis first.
    pub fn new(columns: &[&str]) -> Self {
        Curves { columns: columns.iter().map(|c| (*c).to_owned()).collect(), rows: Vec::new() }
    }

    /// The rows logged so far.
    pub fn rows(&self) -> &[Vec<f64>] {
        &self.rows
    }

    /// Appends a row, one value per column.
    ///
    /// # Errors
    /// [`flax::Error::Value`] when the row's length is not the number of columns.
    pub fn push(&mut self, row: &[f64]) -> flax::Result<()> {
        if row.len() != self.columns.len() {
            return Err(flax::Error::Value(format!(
                "a row of {} values for the {} columns {:?}",
                row.len(),
                self.columns.len(),
                self.columns
            )));
        }
        self.rows.push(row.to_vec());
        Ok(())
    }

    /// The values of column `name` as `(x, value)` points; none when there is no such column.
    pub fn points(&self, name: &str) -> Vec<(f64, f64)> {
        let Some(column) = self.columns.iter().position(|c| c == name) else {
            return Vec::new();
        };
        self.rows.iter().map(|row| (row[0], row[column])).collect()
    }

    /// Keeps the rows up to `x` (a resumed run restarts after its last saved state).
    pub fn truncate_after(&mut self, x: f64) {
        self.rows.retain(|row| row[0] <= x);
    }

    /// Writes the table as CSV.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, path: &Path) -> flax::Result<()> {
        let mut text = self.columns.join(",") + "\n";
        for row in &self.rows {
            text += &(row.iter().map(f64::to_string).collect::<Vec<_>>().join(",") + "\n");
        }
        std::fs::write(path, text).map_err(|e| flax::Error::io(path, e))
    }

    /// Reads a table written by [`Curves::save`] with these columns; empty when there is no
    /// file.
    ///
    /// # Errors
    /// I/O errors, or a file that is not such a table.
    pub fn load(path: &Path, columns: &[&str]) -> flax::Result<Self> {
        let mut curves = Self::new(columns);
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(curves),
            Err(e) => return Err(flax::Error::io(path, e)),
        };
        let malformed = || flax::Error::Format { format: "curves CSV", message: path.display().to_string() };
        let mut lines = text.lines();
        if lines.next() != Some(curves.columns.join(",").as_str()) {
            return Err(malformed());
        }
        for line in lines {
            let row: Vec<f64> =
                line.split(',').map(str::parse).collect::<Result<_, _>>().map_err(|_| malformed())?;
            curves.push(&row).map_err(|_| malformed())?;
        }
        Ok(curves)
    }
}

/// Draws `panels` side by side into a PNG: each a title and the columns of `curves` drawn
/// against its first column, with axis labels and a legend when the DejaVu font is installed.
///
/// # Errors
/// A message when the image cannot be drawn or written.
pub fn plot_curves(path: &Path, curves: &Curves, panels: &[(&str, &[&str])]) -> Result<(), String> {
    use plotters::prelude::*;

    let with_text = register_font();
    let width = 600 * panels.len() as u32;
    let root = BitMapBackend::new(path, (width, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let x_desc = curves.columns[0].as_str();
    let xs = curves.rows.iter().map(|row| row[0]);
    let (x_low, x_high) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    let (x_low, x_high) =
        if x_low < x_high { (x_low, x_high) } else { (x_low.min(1.0), x_low.max(1.0) + 1.0) };
    for (area, (title, names)) in root.split_evenly((1, panels.len())).into_iter().zip(panels) {
        let series: Vec<(&str, Vec<(f64, f64)>)> = names.iter().map(|n| (*n, curves.points(n))).collect();
        let values = series.iter().flat_map(|(_, s)| s.iter().map(|p| p.1));
        let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        let (low, high) = if low <= high { (low, high) } else { (0.0, 1.0) };
        let margin = ((high - low) * 0.05).max(1e-3);
        let mut builder = ChartBuilder::on(&area);
        builder
            .margin(20)
            .x_label_area_size(if with_text { 35 } else { 5 })
            .y_label_area_size(if with_text { 60 } else { 5 });
        if with_text {
            builder.caption(*title, ("sans-serif", 22));
        }
        let mut chart = builder
            .build_cartesian_2d(x_low..x_high, (low - margin)..(high + margin))
            .map_err(|e| e.to_string())?;
        let mut mesh = chart.configure_mesh();
        if with_text {
            mesh.x_desc(x_desc);
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| e.to_string())?;
        for ((name, points), color) in series.into_iter().zip([BLUE, RED, GREEN, MAGENTA]) {
            let dots = points.iter().map(|&p| Circle::new(p, 3, color.filled()));
            chart.draw_series(dots).map_err(|e| e.to_string())?;
            let drawn = chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| e.to_string())?;
            if with_text {
                drawn
                    .label(name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
            }
        }
        if with_text {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

/// Registers the DejaVu font as plotters' `sans-serif` once; whether text can be drawn.
fn register_font() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| match std::fs::read(FONT) {
        // The font lives as long as the program: plotters keeps a reference to its bytes.
        Ok(bytes) => {
            plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes.leak())
                .is_ok()
        }
        Err(_) => false,
    })
}

/// `dir`, created if needed.
///
/// # Errors
/// I/O errors.
pub fn work_dir(dir: PathBuf) -> flax::Result<PathBuf> {
    std::fs::create_dir_all(&dir).map_err(|e| flax::Error::io(&dir, e))?;
    Ok(dir)
}

/// Writes `images` (`(n, height, width)`, values in `[0, 1]`) as a grayscale PNG grid of
/// `nrow` images per row with 2 pixels of padding, each pixel drawn as 2×2 (upstream Flax's
/// `save_image`, after torchvision's `make_grid`).
///
/// # Errors
/// A message when the tensor is not such a batch, or the image cannot be written.
pub fn save_image(path: &Path, images: &flax::tch::Tensor, nrow: usize) -> Result<(), String> {
    use plotters::prelude::*;

    const PADDING: usize = 2;
    const SCALE: usize = 2;
    let [n, height, width] = images.size()[..] else {
        return Err(format!("save_image needs (n, height, width) images, got shape {:?}", images.size()));
    };
    let (n, height, width) = (n as usize, height as usize, width as usize);
    let pixels = images.to_kind(flax::tch::Kind::Float).clamp(0.0, 1.0).flatten(0, -1).to_device(Device::Cpu);
    let pixels = Vec::<f32>::try_from(pixels).map_err(|e: flax::tch::TchError| e.to_string())?;
    let (columns, rows) = (nrow.clamp(1, n.max(1)), n.div_ceil(nrow.max(1)));
    let cell = |size: usize| (size + PADDING) * SCALE;
    let size =
        ((columns * cell(width) + PADDING * SCALE) as u32, (rows * cell(height) + PADDING * SCALE) as u32);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&BLACK).map_err(|e| e.to_string())?;
    for (i, image) in pixels.chunks(height * width).enumerate() {
        let (left, top) =
            ((i % columns) * cell(width) + PADDING * SCALE, (i / columns) * cell(height) + PADDING * SCALE);
        for (j, value) in image.iter().enumerate() {
            let gray = (value * 255.0).round() as u8;
            let (x, y) = (left + (j % width) * SCALE, top + (j / width) * SCALE);
            for (dx, dy) in (0..SCALE).flat_map(|dx| (0..SCALE).map(move |dy| (dx, dy))) {
                let pixel = ((x + dx) as i32, (y + dy) as i32);
                root.draw_pixel(pixel, &RGBColor(gray, gray, gray)).map_err(|e| e.to_string())?;
            }
        }
    }
    root.present().map_err(|e| e.to_string())
}

/// `--nproc N`: this program again on N local workers, without `--nproc`.
pub fn spawn_workers(nproc: i64) -> flax::Result<()> {
    let mut args = std::env::args_os().skip(1).collect::<Vec<_>>();
    if let Some(i) = args.iter().position(|a| a == "--nproc") {
        args.drain(i..(i + 2).min(args.len()));
    }
    args.retain(|a| !a.to_string_lossy().starts_with("--nproc="));
    let failed: Vec<usize> = flax::distributed::spawn_local(nproc, args)?
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.success())
        .map(|(rank, _)| rank)
        .collect();
    match failed.is_empty() {
        true => Ok(()),
        false => Err(flax::Error::Value(format!("workers {failed:?} failed"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a run saves is what `--resume` reads back, cut after the restored step.
    #[test]
    fn curves_round_trip_and_truncate() {
        let path = std::env::temp_dir().join(format!("flax-examples-curves-{}.csv", std::process::id()));
        let mut curves = Curves::new(&["step", "loss"]);
        curves.push(&[200.0, 1.25]).unwrap();
        curves.push(&[400.0, 0.5]).unwrap();
        assert!(curves.push(&[600.0]).is_err());
        curves.save(&path).unwrap();
        let mut loaded = Curves::load(&path, &["step", "loss"]).unwrap();
        assert_eq!(loaded, curves);
        assert!(Curves::load(&path, &["epoch", "loss"]).is_err());
        loaded.truncate_after(300.0);
        assert_eq!(loaded.points("loss"), [(200.0, 1.25)]);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(Curves::load(&path, &["step", "loss"]).unwrap().rows().len(), 0);
    }
}
