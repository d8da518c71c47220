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
    use plotters::prelude::*;

    let with_text = register_font();
    let root = BitMapBackend::new(path, (1200, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(600);
    let panels = [
        (left, "Loss", [("train_loss", &history.train_loss), ("test_loss", &history.test_loss)]),
        (
            right,
            "Accuracy",
            [("train_accuracy", &history.train_accuracy), ("test_accuracy", &history.test_accuracy)],
        ),
    ];
    for (area, title, series) in panels {
        let values = series.iter().flat_map(|(_, s)| s.iter().copied());
        let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        let margin = ((high - low) * 0.05).max(1e-3);
        let epochs = history.epochs().max(2) as f64;
        let mut builder = ChartBuilder::on(&area);
        builder
            .margin(20)
            .x_label_area_size(if with_text { 35 } else { 5 })
            .y_label_area_size(if with_text { 60 } else { 5 });
        if with_text {
            builder.caption(title, ("sans-serif", 22));
        }
        let mut chart = builder
            .build_cartesian_2d(1.0..epochs, (low - margin)..(high + margin))
            .map_err(|e| e.to_string())?;
        let mut mesh = chart.configure_mesh();
        if with_text {
            mesh.x_desc("epoch");
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| e.to_string())?;
        for ((name, values), color) in series.iter().zip([BLUE, RED]) {
            let points: Vec<(f64, f64)> =
                values.iter().enumerate().map(|(i, v)| ((i + 1) as f64, *v)).collect();
            let dots = points.iter().map(|&p| Circle::new(p, 3, color.filled()));
            chart.draw_series(dots).map_err(|e| e.to_string())?;
            let drawn = chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| e.to_string())?;
            if with_text {
                drawn
                    .label(*name)
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
