//! The `tidegate` binary: see [`tidegate::cli`].

fn main() -> std::process::ExitCode {
    tidegate::cli::main()
}
