"""GET /categories: what the category filters accept."""

from fastapi import APIRouter, Request

from routers.responses import FastJSONResponse
from schemas import CategoriesOut

router = APIRouter(tags=["catalog"])


@router.get("/categories", response_model=CategoriesOut, name="catalog:categories")
async def categories(request: Request):
    """Main categories and their sub-categories, with display names and product counts."""
    return FastJSONResponse({"categories": request.app.state.catalog.category_tree})
