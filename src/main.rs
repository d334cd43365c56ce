use clap::{Parser, Subcommand};

/// udsim: an executable specification of Linux Unix-domain sockets, judged by the live kernel.
#[derive(Debug, Parser)]
#[command(name = "udsim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Echo server over a Unix stream socket.
    Serve(udsim::echo::ServeArgs),
    /// Echo client: copies stdin to the socket, prints the echo.
    Client(udsim::echo::ClientArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(a) => udsim::echo::run_serve(a),
        Command::Client(a) => udsim::echo::run_client(a),
    };
    std::process::exit(code);
}
