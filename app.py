from costguardian import create_app

app = create_app()
