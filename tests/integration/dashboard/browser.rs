//! A headless Chromium driven over WebDriver: `chromedriver` (on a port it picks) started in a
//! process group of its own, and one session with a temporary profile. [`Browser::close`]
//! ends the session (the driver closes the browser); dropping the [`Browser`] kills the
//! driver's whole process group by its id, so no browser outlives the test even when it fails
//! midway (Chromium's crash handlers, which leave the group, end by themselves once the
//! browser is gone).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::json;

/// How long chromedriver may take to say which port it listens on.
const DRIVER_READY: Duration = Duration::from_secs(20);

/// A browser session and the driver serving it.
pub struct Browser {
    /// `None` once closed.
    pub client: Option<Client>,
    driver: Child,
    /// The browser's profile; removed after the driver is gone.
    _profile: tempfile::TempDir,
}

/// The first of `names` found in `PATH`.
fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (window 1400×1000).
    pub async fn start() -> Self {
        let missing = "needs Chromium and its WebDriver: apt-get install chromium chromium-driver \
                       (scripts/test.sh installs them)";
        let chromium = find(&["chromium", "chromium-browser", "google-chrome"])
            .unwrap_or_else(|| panic!("no chromium in PATH: the dashboard test {missing}"));
        let chromedriver = find(&["chromedriver"])
            .unwrap_or_else(|| panic!("no chromedriver in PATH: the dashboard test {missing}"));
        let profile = tempfile::Builder::new()
            .prefix("circuit-chromium-")
            .tempdir()
            .expect("a profile dir");
        let mut driver = Command::new(chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        // It prints the port it picked; the rest of its output is read and dropped.
        let out = driver.stdout.take().expect("piped stdout");
        let (port_tx, port_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let _ = port_tx.send(rest.trim_end_matches('.').trim().to_string());
                }
            }
        });
        let mut browser = Self {
            client: None,
            driver,
            _profile: profile,
        };
        let port = port_rx
            .recv_timeout(DRIVER_READY)
            .unwrap_or_else(|_| panic!("chromedriver did not start within {DRIVER_READY:?}"));
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--no-first-run".to_string(),
            "--window-size=1400,1000".to_string(),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let caps = json!({
            "goog:chromeOptions": { "binary": chromium, "args": args }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("an object")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("a Chromium session through chromedriver: {e}"));
        browser.client = Some(client);
        browser
    }

    /// The session.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    /// Ends the session (the driver closes the browser).
    pub async fn close(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver and the browser it started share the driver's process group.
        let group = Pid::from_raw(i32::try_from(self.driver.id()).expect("a pid fits an i32"));
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}
