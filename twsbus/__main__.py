from twsbus.cli import app

app(prog_name="twsbus")
